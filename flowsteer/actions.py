"""The action grammar: what the policy may write in one turn, and a total parser for it.

A turn is an optional ``<think>…</think>`` and one action made of tags::

    <action>add</action><operator>Plan</operator>
    <action>add</action><structure>parallel</structure><operators>Programmer, Custom</operators>
    <action>add</action><structure>conditional</structure><condition>Verify</condition>
        <on_fail>Revise</on_fail><on_pass>done</on_pass>
    <action>add</action><structure>loop</structure><operators>Review, Revise</operators><count>3</count>
    <action>add</action><operator>Verify</operator><position>2</position>
    <action>set_prompt</action><prompt>Solve with sympy.</prompt>
    <action>modify</action><target>n3</target><operator>Custom</operator>
    <action>delete</action><target>n3</target>
    <action>finish</action>

Decisions (what a tolerant but unambiguous environment does):

* `parse_action` is total: any input (str, bytes, anything) gives an `Action` or a `ParseError`
  whose message says what to write instead; it never raises. Work is linear in the input.
* Tags are case-insensitive, may carry inner whitespace (``< Action >``) and ``on-fail`` equals
  ``on_fail``; values are stripped. Action names normalise ``set-prompt``/``Set Prompt``.
* One action per turn: the first ``<action>`` wins; fields are read from the start of the text
  up to the second ``<action>`` (so fields may precede their action tag); later actions are only
  counted (`Action.ignored`), which the feedback reports.
* ``<prompt>`` content is opaque: tags inside a prompt are part of the prompt. Any other field
  must close before the next tag, else it is an unclosed-tag error.
* Text inside a Markdown code fence (`````) is not read, nor is thinking: ``<think>…</think>``
  is removed; a bare ``…</think>`` (chat templates that open the think block in the prompt)
  drops everything before it; an unclosed ``<think>`` runs up to the first ``<action>``.
* ``<position>`` is the 1-based step the new node becomes (``start``/``end`` also accepted;
  absent: append). ``<target>`` is a node id (``n3``; a bare ``3`` means ``n3``) or an operator
  name, which the canvas resolves when it names exactly one node.
* An empty ``<prompt></prompt>`` keeps the operator's default prompt.
* A message with no ``<action>`` tag is a `ParseError`, but when it is plain text or a bare
  ``<prompt>…</prompt>`` (no other tag) its `ParseError.prompt` holds that text, thinking
  removed: the canvas takes it as the awaited prompt (the paper's two-step add: the canvas
  asks for the prompt, the policy answers with it). An empty or whitespace-only message, or
  one that is only thinking, has no prompt.
"""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass, replace
from typing import Literal

from flowsteer.operators.spec import STRUCTURE_KINDS

ActionType = Literal["add", "delete", "modify", "set_prompt", "finish"]
ACTION_TYPES: tuple[str, ...] = ("add", "delete", "modify", "set_prompt", "finish")
StructureName = Literal["parallel", "conditional", "loop"]
ParseErrorCode = Literal[
    "empty", "no_action", "fenced_action", "unclosed_tag", "unknown_action", "missing_field",
    "bad_value",
]  # fmt: skip

# Grammar constants: the parser, `format_action` and the system prompt all read these.
TAG_THINK = "think"
TAG_ACTION = "action"
FIELD_TAGS: tuple[str, ...] = (
    "operator", "structure", "operators", "condition", "on_fail", "on_pass", "count",
    "position", "target", "prompt",
)  # fmt: skip
DONE = "done"
FENCE = "```"
MODIFY_FIELDS: tuple[str, ...] = (
    "operator",
    "operators",
    "condition",
    "on_fail",
    "on_pass",
    "count",
)
_ACTION_ALIASES = {"setprompt": "set_prompt", "set_prompts": "set_prompt"}
_MAX_NAME = 64  # longer "names" are junk; echo at most this much in messages


@dataclass(frozen=True, slots=True)
class Action:
    """One parsed action.

    Attributes:
        type: ``add``, ``delete``, ``modify``, ``set_prompt`` or ``finish``.
        operator: The operator to add, or the new operator of a modified node.
        structure: ``parallel``, ``conditional`` or ``loop`` for a structure add.
        operators: Parallel children or loop body, in order.
        condition: A conditional's checker.
        on_fail: A conditional's fail branch.
        on_pass: A conditional's pass branch (``"done"`` or ``None``: pass through).
        count: A loop's bound.
        position: 1-based step the added node becomes (``None``: append).
        target: The node a delete/modify/set_prompt acts on (``"n3"`` or an operator name).
        prompt: The prompt text of a set_prompt (``""``: the operator's default).
        think: The turn's thinking, if any (for logs; the canvas ignores it).
        ignored: How many further actions the message contained (not applied).
    """

    type: ActionType
    operator: str | None = None
    structure: StructureName | None = None
    operators: tuple[str, ...] = ()
    condition: str | None = None
    on_fail: str | None = None
    on_pass: str | None = None
    count: int | None = None
    position: int | None = None
    target: str | None = None
    prompt: str | None = None
    think: str | None = None
    ignored: int = 0


@dataclass(frozen=True, slots=True)
class ParseError:
    """Why a message is not an action, phrased as what to write instead.

    Attributes:
        message: The actionable explanation the feedback shows.
        code: A stable category (see `ParseErrorCode`).
        action_type: The action named, when the ``<action>`` tag itself was readable.
        think: The turn's thinking, if any.
        ignored: Further actions present (see `Action.ignored`).
        prompt: For a message without an action tag that is plain text or a bare
            ``<prompt>…</prompt>``: that text, stripped (``""`` for an empty bare prompt
            tag); ``None`` otherwise. A canvas awaiting a prompt accepts it as the prompt.
    """

    message: str
    code: ParseErrorCode
    action_type: str | None = None
    think: str | None = None
    ignored: int = 0
    prompt: str | None = None


# ------------------------------------------------------------------------- regexes
# `<\s*(?:(/)\s*)?name\s*>`: the optional slash group keeps the two whitespace runs from
# competing for the same characters, so a run of spaces after "<" cannot cause backtracking.
_TAG_VARIANTS = {  # every spelling the parser accepts -> the canonical tag
    **{t: t for t in (TAG_ACTION, *FIELD_TAGS)},
    **{t.replace("_", "-"): t for t in FIELD_TAGS if "_" in t},
    **{t.replace("_", ""): t for t in FIELD_TAGS if "_" in t},
}
# Only our tags match (longest spellings first), so unknown tags cost nothing.
_TAG = re.compile(
    r"<\s*(?:(/)\s*)?("
    + "|".join(re.escape(v) for v in sorted(_TAG_VARIANTS, key=len, reverse=True))
    + r")\s*>",
    re.IGNORECASE,
)
_THINK_ANY = re.compile(r"<\s*(?:/\s*)?think\s*>", re.IGNORECASE)
_THINK_OPEN = re.compile(r"<\s*think\s*>", re.IGNORECASE)
_THINK_CLOSE = re.compile(r"<\s*/\s*think\s*>", re.IGNORECASE)
_ACTION_OPEN = re.compile(r"<\s*action\s*>", re.IGNORECASE)
_CLOSE = {
    name: re.compile(
        r"<\s*/\s*(?:"
        + "|".join(re.escape(v) for v, c in _TAG_VARIANTS.items() if c == name)
        + r")\s*>",
        re.IGNORECASE,
    )
    for name in (TAG_ACTION, *FIELD_TAGS)
}
_LIST_SPLIT = re.compile(r"->|[\s,;|\[\]()\"'`+]+")
_INT = re.compile(r"[-+]?\d{1,9}")
_TARGET_ID = re.compile(r"n?\s*(\d{1,9})", re.IGNORECASE)
_ACTION_NORM = re.compile(r"[\s\-]+")


def _clip(value: str, n: int = 40) -> str:
    value = " ".join(value.split())
    return value if len(value) <= n else value[: n - 1] + "…"


# --------------------------------------------------------------------- formatting
def format_action(action: Action) -> str:
    """The canonical text of `action`; `parse_action(format_action(a))` gives `a` back."""
    parts = []
    if action.think:
        parts.append(f"<{TAG_THINK}>{action.think}</{TAG_THINK}>")
    parts.append(f"<{TAG_ACTION}>{action.type}</{TAG_ACTION}>")
    values = {
        "target": action.target,
        "operator": action.operator,
        "structure": action.structure,
        "operators": ", ".join(action.operators) if action.operators else None,
        "condition": action.condition,
        "on_fail": action.on_fail,
        "on_pass": action.on_pass,
        "count": action.count,
        "position": action.position,
        "prompt": action.prompt,
    }
    for tag, value in values.items():
        if value is not None:
            parts.append(f"<{tag}>{value}</{tag}>")
    return "".join(parts)


# ------------------------------------------------------------------------ parsing
def parse_action(text: object) -> Action | ParseError:
    """Parse one policy message into an `Action`, or a `ParseError` saying how to fix it.

    Total and linear-time: never raises, whatever `text` is (see the module docstring).
    """
    try:
        return _parse(text)
    except Exception as exc:  # pragma: no cover - a parser bug must not end an episode
        return ParseError(
            f"could not read the action ({type(exc).__name__}); {_EXAMPLE_HINT}", "bad_value"
        )


_EXAMPLE_HINT = "write one action such as <action>add</action><operator>Plan</operator>"


def _parse(text: object) -> Action | ParseError:
    if isinstance(text, (bytes, bytearray)):
        text = bytes(text).decode("utf-8", errors="replace")
    elif not isinstance(text, str):
        return ParseError(f"expected text, got {type(text).__name__}; {_EXAMPLE_HINT}", "empty")
    if not text.strip():
        return ParseError(f"the message is empty; {_EXAMPLE_HINT}", "empty")
    body, think = _strip_think(text)
    unfenced, fenced = _strip_fences(body)
    out = _scan(unfenced, think, fenced)
    if isinstance(out, ParseError) and out.code == "no_action" and out.action_type is None:
        prompt = _bare_prompt(body, unfenced)
        if prompt is not None:
            return replace(out, prompt=prompt)
    return out


def _bare_prompt(body: str, unfenced: str) -> str | None:
    """The prompt a message without an action tag carries: the contents of a lone
    ``<prompt>`` tag, or the whole text when it has none of our tags; else ``None``."""
    tags = [m for m in _TAG.finditer(unfenced) if not m.group(1)]
    if not tags:
        text = body.strip()
        return text or None
    if all(_TAG_VARIANTS[m.group(2).lower()] == "prompt" for m in tags):
        first = tags[0]
        close = _CLOSE["prompt"].search(unfenced, first.end())
        if close is not None:
            return unfenced[first.end() : close.start()].strip()
    return None


def _strip_think(text: str) -> tuple[str, str | None]:
    """Remove thinking; returns (the rest, the thinking joined) in one linear pass."""
    if _THINK_ANY.search(text) is None:
        return text, None
    thoughts: list[str] = []
    first_open = _THINK_OPEN.search(text)
    first_close = _THINK_CLOSE.search(text)
    if first_close is not None and (first_open is None or first_close.start() < first_open.start()):
        thoughts.append(text[: first_close.start()])  # the template opened the think block
        text = text[first_close.end() :]
    out: list[str] = []
    pos = 0
    while (m := _THINK_OPEN.search(text, pos)) is not None:
        out.append(text[pos : m.start()])
        close = _THINK_CLOSE.search(text, m.end())
        if close is not None:
            thoughts.append(text[m.end() : close.start()])
            pos = close.end()
            continue
        act = _ACTION_OPEN.search(text, m.end())  # unclosed: thinking runs up to the action
        end = act.start() if act is not None else len(text)
        thoughts.append(text[m.end() : end])
        pos = end
        break
    out.append(text[pos:])
    think = "\n".join(t.strip() for t in thoughts).strip() or None
    return "".join(out), think


def _strip_fences(text: str) -> tuple[str, bool]:
    """Remove ``` fenced blocks (an unclosed fence runs to the end); report whether a removed
    block held an action tag, so the error can say the action was fenced."""
    if FENCE not in text:
        return text, False
    out: list[str] = []
    pos = 0
    fenced_action = False
    while (start := text.find(FENCE, pos)) != -1:
        out.append(text[pos:start])
        end = text.find(FENCE, start + 3)
        block_end = len(text) if end == -1 else end + 3
        if not fenced_action and _ACTION_OPEN.search(text, start, block_end):
            fenced_action = True
        pos = block_end
    out.append(text[pos:])
    return "".join(out), fenced_action


def _scan(body: str, think: str | None, fenced: bool) -> Action | ParseError:
    fields: dict[str, str] = {}
    action_raw: str | None = None
    ignored = 0
    pos = 0
    search = _TAG.search
    while (m := search(body, pos)) is not None:
        pos = m.end()
        if m.group(1):
            continue  # a stray closing tag
        name = _TAG_VARIANTS[m.group(2).lower()]
        if name == TAG_ACTION and action_raw is not None:
            ignored = 1 + len(_ACTION_OPEN.findall(body, pos))
            break
        close = _CLOSE[name].search(body, pos)
        if close is None:
            return ParseError(
                f"<{name}> is never closed; write <{name}>…</{name}>",
                "unclosed_tag",
                action_raw,
                think,
            )
        value = body[pos : close.start()]
        if name != "prompt" and "<" in value:
            return ParseError(
                f"<{name}> is not closed before the next tag; write <{name}>…</{name}>",
                "unclosed_tag",
                action_raw,
                think,
            )
        pos = close.end()
        if name == TAG_ACTION:
            action_raw = value
        else:
            fields.setdefault(name, value)
    if action_raw is None:
        if fenced:
            msg = "the action is inside a ``` code fence, which is not read; write it as plain text"
            return ParseError(msg, "fenced_action", None, think)
        if fields:
            seen = ", ".join(f"<{k}>" for k in fields)
            return ParseError(
                f"found {seen} but no <action> tag; start with <action>add</action>, "
                "<action>set_prompt</action>, <action>modify</action>, <action>delete</action> "
                "or <action>finish</action>",
                "no_action",
                None,
                think,
            )
        return ParseError(f"no action found; {_EXAMPLE_HINT}", "no_action", None, think)
    return _build(action_raw, fields, think, ignored)


def _build(
    raw: str, fields: dict[str, str], think: str | None, ignored: int
) -> Action | ParseError:
    atype = _ACTION_NORM.sub("_", raw.strip().lower())
    atype = _ACTION_ALIASES.get(atype, atype)

    def err(message: str, code: ParseErrorCode = "missing_field") -> ParseError:
        return ParseError(message, code, atype if atype in ACTION_TYPES else None, think, ignored)

    if atype not in ACTION_TYPES:
        close = difflib.get_close_matches(atype, ACTION_TYPES, n=1, cutoff=0.6)
        hint = f"did you mean {close[0]}? " if close else ""
        return err(
            f"unknown action {_clip(raw)!r}; {hint}actions are {', '.join(ACTION_TYPES)}",
            "unknown_action",
        )
    values: dict[str, object] = {"type": atype, "think": think, "ignored": ignored}
    for tag in ("operator", "condition", "on_fail", "on_pass"):
        if tag in fields:
            name = fields[tag].strip().strip("\"'`").strip()
            if not name or len(name) > _MAX_NAME or _LIST_SPLIT.search(name):
                if tag == "operator" and atype == "add" and len(_split_names(name)) > 1:
                    return err(
                        f"add takes one operator, got {_clip(name)!r}; to run several, add a "
                        "structure, e.g. <action>add</action><structure>parallel</structure>"
                        "<operators>Programmer, Custom</operators>",
                        "bad_value",
                    )
                return err(f"<{tag}> must hold one operator name, got {_clip(name)!r}", "bad_value")
            values[tag] = name
    if "operators" in fields:
        names = _split_names(fields["operators"])
        if not names:
            return err("<operators> is empty; list operators, e.g. Programmer, Custom", "bad_value")
        values["operators"] = tuple(names)
    for tag in ("count", "position"):
        if tag in fields:
            parsed = _parse_int(fields[tag], tag)
            if isinstance(parsed, str):
                return err(parsed, "bad_value")
            values[tag] = parsed
    if "target" in fields:
        target = fields["target"].strip()
        if not target:
            return err("<target> is empty; name a node id such as n3", "bad_value")
        m = _TARGET_ID.fullmatch(target)
        values["target"] = f"n{int(m.group(1))}" if m else _clip(target, _MAX_NAME)
    if "prompt" in fields:
        values["prompt"] = fields["prompt"].strip()
    if "structure" in fields:
        st = fields["structure"].strip().lower()
        if st not in STRUCTURE_KINDS:
            return err(
                f"unknown structure {_clip(st)!r}; structures are {', '.join(STRUCTURE_KINDS)}",
                "bad_value",
            )
        values["structure"] = st
    return _check_fields(atype, values, err)


def _split_names(value: str) -> list[str]:
    return [n for n in _LIST_SPLIT.split(value.strip()) if n]


def _parse_int(value: str, tag: str) -> int | str:
    v = value.strip().lower()
    if tag == "position" and v in ("end", "last"):
        return -1  # sentinel replaced by None below
    if tag == "position" and v in ("start", "first", "beginning"):
        return 1
    m = _INT.search(v)
    if m is None:
        return f"<{tag}> must be a whole number, got {_clip(value)!r}"
    n = int(m.group())
    if tag == "position" and n < 1:
        return f"<position> counts steps from 1, got {n}"
    return n


def _check_fields(atype: str, v: dict[str, object], err) -> Action | ParseError:
    if v.get("position") == -1:
        v["position"] = None
    if atype == "add":
        op = v.get("operator")
        if "structure" not in v and isinstance(op, str) and op.lower() in STRUCTURE_KINDS:
            v["structure"], v["operator"] = op.lower(), None  # <operator>parallel</operator>
        st = v.get("structure")
        if st is None:
            if op is None:
                return err(
                    "<operator> tag missing after <action>add</action>; write e.g. "
                    "<action>add</action><operator>Plan</operator>, or add a structure with "
                    "<structure>parallel</structure><operators>Programmer, Custom</operators>"
                )
        elif st == "conditional":
            ops = v.get("operators", ())
            if "condition" not in v and len(ops) in (2, 3):  # <operators>Verify, Revise</operators>
                v["condition"], v["on_fail"] = ops[0], ops[1]
                if len(ops) == 3:
                    v["on_pass"] = ops[2]
                v["operators"] = ()
            if "condition" not in v or "on_fail" not in v:
                return err(
                    "a conditional needs <condition> and <on_fail>; write e.g. "
                    "<action>add</action><structure>conditional</structure>"
                    "<condition>Verify</condition><on_fail>Revise</on_fail><on_pass>done</on_pass>"
                )
        elif "operators" not in v:
            example = (
                "<operators>Programmer, Custom</operators>"
                if st == "parallel"
                else "<operators>Review, Revise</operators><count>3</count>"
            )
            return err(
                f"<operators> tag missing for a {st}; write e.g. "
                f"<action>add</action><structure>{st}</structure>{example}"
            )
        elif st == "loop" and "count" not in v:
            return err(
                "a loop needs <count>; write e.g. <action>add</action><structure>loop</structure>"
                "<operators>Review, Revise</operators><count>3</count>"
            )
    elif atype in ("delete", "modify") and "target" not in v:
        return err(
            f"<target> tag missing after <action>{atype}</action>; name the node id, e.g. "
            f"<action>{atype}</action><target>n2</target>"
            + ("<operator>Custom</operator>" if atype == "modify" else "")
        )
    elif atype == "modify" and not any(k in v for k in MODIFY_FIELDS):
        return err(
            "modify needs what to change: <operator> for an operator node; <operators>, "
            "<condition>, <on_fail>, <on_pass> or <count> for a structure; e.g. "
            "<action>modify</action><target>n2</target><operator>Custom</operator>"
        )
    elif atype == "set_prompt" and "prompt" not in v:
        return err(
            "<prompt> tag missing after <action>set_prompt</action>; write e.g. "
            "<action>set_prompt</action><prompt>Solve it step by step.</prompt> "
            "(an empty <prompt></prompt> keeps the default)"
        )
    return Action(**v)  # type: ignore[arg-type]


# Examples shown in the system prompt; tests check each parses back to itself.
GRAMMAR_EXAMPLES: tuple[tuple[str, Action], ...] = (
    ("add an operator at the end", Action("add", operator="Plan")),
    ("then give its prompt", Action("set_prompt", prompt="List the quantities and the unknown.")),
    ("add an operator as step 2", Action("add", operator="Verify", position=2)),
    (
        "add a parallel block",
        Action("add", structure="parallel", operators=("Programmer", "Custom")),
    ),
    (
        "add a conditional",
        Action("add", structure="conditional", condition="Verify", on_fail="Revise", on_pass=DONE),
    ),
    (
        "add a loop",
        Action("add", structure="loop", operators=("Review", "Revise"), count=3),
    ),
    ("change a node's operator", Action("modify", target="n3", operator="AnswerGenerate")),
    ("change a loop's count", Action("modify", target="n7", count=2)),
    ("rewrite a node's prompt", Action("set_prompt", target="n2", prompt="Use sympy.")),
    ("delete a node", Action("delete", target="n4")),
    ("finish", Action("finish")),
)


__all__ = [
    "ACTION_TYPES",
    "DONE",
    "FIELD_TAGS",
    "GRAMMAR_EXAMPLES",
    "Action",
    "ActionType",
    "ParseError",
    "ParseErrorCode",
    "format_action",
    "parse_action",
]
