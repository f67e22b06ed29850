"""`ActionGrammar`: one turn of the action grammar (docs/design.md §3) as a decoding constraint.

An untrained policy rarely writes a valid action, so every episode scores −1, every group has
zero variance and nothing learns. With a constraint on each request, every sampled turn parses
*and* is accepted by the canvas: the grammar is generated from the canvas itself, per turn.

* **building**: exactly one action whose names and numbers the canvas accepts now: operators
  and structures of the canvas's library, ensemble operators only where a parallel block comes
  before them, a conditional's condition among the checkers, node targets that exist (a delete
  only where removing that node leaves a valid workflow), positions ``1..steps+1``, loop counts
  ``1..5``, sizes within ``max_nodes`` / ``max_children``, ``finish`` only when the
  `FinishConstraints` hold. Modify covers an operator node's operator and a loop's count.
* **awaiting_prompt**: the prompt, as plain text or a bare ``<prompt>…</prompt>``.
* Both may start with ``<think>…</think>``. Free text (thinking, prompts) is printable ASCII,
  tab and newline without ``<`` and a backtick (so it cannot open a tag or a code fence), and
  bounded in length.

Length. A turn cut at its token budget does not parse, so the grammar is sized to the request's
``max_tokens``: every string it admits is at most ``max_tokens - 1`` UTF-8 bytes (one slot for
the end-of-turn token), and a token of a byte-level vocabulary covers at least one byte. The
structure of the action comes first: alternatives (and list lengths) that cannot fit are left
out, and the free text gets what is left, up to ``max_think_chars`` / ``max_prompt_chars``.
When not even the shortest action fits, the shortest ones are kept anyway (best effort).

The constraint is text (EBNF in the syntax xgrammar and vLLM's ``structured_outputs.grammar``
read); each engine compiles it against its own tokenizer and vocabulary, and xgrammar caches
compiled grammars by text. This module builds the text, cached per (library, canvas state
signature, token budget), and imports neither torch nor xgrammar.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
from typing import TYPE_CHECKING

from flowsteer.actions import Action, format_action, parse_action
from flowsteer.canvas.canvas import AWAITING_PROMPT, BUILDING
from flowsteer.canvas.graph import LOOP_COUNT_MAX, LOOP_COUNT_MIN, GraphEditError

if TYPE_CHECKING:
    from flowsteer.canvas.canvas import Canvas
    from flowsteer.canvas.graph import WorkflowGraph
    from flowsteer.operators.library import OperatorLibrary

# Printable ASCII, tab and newline, without "<" (0x3C) and "`" (0x60).
_TEXT = r"[\t\n -;=-_a-~]"
_TEXT_START = r"[!-;=-_a-~]"  # a bare prompt starts with a visible character
_THINK_FIXED = len("<think></think>\n")
_PROMPT_FIXED = len("<prompt></prompt>")


@dataclass(frozen=True)
class ActionConstraint:
    """A per-request constraint (`GenerationRequest.constraint`): one turn's grammar.

    Attributes:
        ebnf: The grammar, root rule ``root``; an engine compiles it with its tokenizer and
            ends the turn with the request's stop token once it is complete.
        state: The canvas state it was built for (``building`` or ``awaiting_prompt``).
        max_bytes: The longest text it admits, in UTF-8 bytes (the stop token excluded).
    """

    ebnf: str
    state: str
    max_bytes: int


@dataclass(frozen=True)
class _Alt:
    """One alternative of the turn's body: an EBNF expression and its longest text in bytes."""

    expr: str
    size: int


class ActionGrammar:
    """Builds each turn's `ActionConstraint` from the canvas (see the module docstring).

    Args:
        max_think_chars: Longest ``<think>`` text a turn may write.
        max_prompt_chars: Longest prompt a turn may write.
        cache_size: Grammars kept per builder (least recently used are dropped).
        stop_token_ids: Tokens that end a constrained turn besides the chat's end of turn: the
            model's EOS ids (its generation config's and the tokenizer's). vLLM's grammar backend
            admits every one of them as an end of the grammar, so constrained requests stop on
            them in every engine and all engines renormalise over the same set.
    """

    def __init__(
        self,
        max_think_chars: int = 256,
        max_prompt_chars: int = 512,
        cache_size: int = 4096,
        stop_token_ids: tuple[int, ...] = (),
    ) -> None:
        if max_think_chars < 0 or max_prompt_chars < 1:
            raise ValueError(
                f"ActionGrammar: max_think_chars must be >= 0 and max_prompt_chars >= 1, got "
                f"{max_think_chars} and {max_prompt_chars}"
            )
        self.max_think_chars = max_think_chars
        self.max_prompt_chars = max_prompt_chars
        self.cache_size = cache_size
        self.stop_token_ids = tuple(int(t) for t in stop_token_ids)
        self._cache: OrderedDict[tuple, ActionConstraint] = OrderedDict()
        self._names: dict[int, tuple[OperatorLibrary, _Names]] = {}

    def for_canvas(self, canvas: Canvas, max_tokens: int) -> ActionConstraint:
        """The constraint of the canvas's next turn, sized to ``max_tokens`` sampled tokens."""
        if canvas.state not in (BUILDING, AWAITING_PROMPT):
            raise ValueError(f"ActionGrammar: the canvas is {canvas.state}; no turn is expected")
        library, graph = canvas.library, canvas.graph
        finish = not canvas.finish_constraints.violations(graph, library)
        key = (
            library,
            canvas.state,
            _signature(graph),
            finish,
            canvas.max_nodes,
            canvas.max_children,
            max_tokens,
        )
        hit = self._cache.get(key)
        if hit is not None:
            self._cache.move_to_end(key)
            return hit
        budget = max(max_tokens - 1, 0)  # one token for the end of turn
        if canvas.state == AWAITING_PROMPT:
            out = self._awaiting(budget)
        else:
            names = self._library_names(library)
            out = self._building(canvas, graph, names, finish, budget)
        self._cache[key] = out
        if len(self._cache) > self.cache_size:
            self._cache.popitem(last=False)
        return out

    # ------------------------------------------------------------------------- states
    def _awaiting(self, budget: int) -> ActionConstraint:
        prompt = max(min(self.max_prompt_chars, budget - _PROMPT_FIXED), 0)
        think = min(self.max_think_chars, budget - _PROMPT_FIXED - prompt - _THINK_FIXED)
        rules = [
            f'body ::= "<prompt>" {_text(prompt)} "</prompt>" | {_TEXT_START} {_text(prompt - 1)}'
            if prompt >= 1
            else 'body ::= "<prompt></prompt>"'
        ]
        return self._assemble(rules, AWAITING_PROMPT, _PROMPT_FIXED + prompt, think)

    def _building(
        self, canvas: Canvas, graph: WorkflowGraph, names: _Names, finish: bool, budget: int
    ) -> ActionConstraint:
        steps = [graph.node(nid) for nid in graph.sequence]
        first_parallel = next((i for i, n in enumerate(steps) if n.name == "parallel"), None)
        rules = [
            f"op_plain ::= {_choice(names.plain)}",
            f"op_all ::= {_choice(names.plain + names.ensemble)}",
        ]
        if names.checkers:
            rules.append(f"checker ::= {_choice(names.checkers)}")
        plain, every = _max_len(names.plain), _max_len(names.plain + names.ensemble)
        alts: list[_Alt] = []
        if finish:
            alts.append(_Alt('"<action>finish</action>"', len("<action>finish</action>")))

        # Positions: ensemble operators only after the first parallel block (graph.validate);
        # appending (no <position>) puts a step after every other, so after that block too.
        n_pos = len(steps) + 1
        after = range(first_parallel + 2, n_pos + 1) if first_parallel is not None else range(0)
        pos_any = _position(range(1, n_pos + 1))
        placements = [("op_plain", plain, pos_any)]
        if after and names.ensemble:
            placements.append(("op_all", every, _position(after)))
        room = canvas.max_nodes - len(graph)
        head = len("<action>add</action>")

        def add(body: str, size: int, pos: _Alt) -> None:
            """An add with an optional position, or without one where that does not fit."""
            if head + size + pos.size <= budget:
                alts.append(
                    _Alt(f'"<action>add</action>{body} {pos.expr}?', head + size + pos.size)
                )
            else:
                alts.append(_Alt(f'"<action>add</action>{body}', head + size))

        def add_operator(options: list[str], pos: _Alt) -> None:
            """One operator; each name only in the forms (with/without position) that fit."""
            short = [n for n in options if head + 21 + len(n.encode()) <= budget]
            placed = [n for n in short if head + 21 + len(n.encode()) + pos.size <= budget]
            if not short:  # nothing fits: keep them all, the best-effort fallback picks
                add(f'<operator>" ({_choice(options)}) "</operator>"', 21 + _max_len(options), pos)
                return
            body = f'"<action>add</action><operator>" ({_choice(short)}) "</operator>"'
            alts.append(_Alt(body, head + 21 + _max_len(short)))
            if placed:
                body = f'"<action>add</action><operator>" ({_choice(placed)}) "</operator>"'
                alts.append(_Alt(f"{body} {pos.expr}", head + 21 + _max_len(placed) + pos.size))

        if room >= 1 and names.plain:
            add_operator(names.plain, pos_any)
        if room >= 1 and names.ensemble and after:
            add_operator(names.ensemble, placements[-1][2])

        structures = {s.name for s in canvas.library.structures}
        width = min(canvas.max_children, room - 1)
        if "parallel" in structures and width >= 2 and names.plain:
            fixed = len("<structure>parallel</structure><operators></operators>")
            k = _fit_list(budget - head - fixed - pos_any.size, plain, 2, width)
            if k:
                ops = _list("op_plain", 2, k)
                body = f'<structure>parallel</structure><operators>" {ops} "</operators>"'
                add(body, fixed + k * plain + 2 * (k - 1), pos_any)
        if "loop" in structures and width >= 1 and names.plain:
            counts = _choice([str(c) for c in range(LOOP_COUNT_MIN, LOOP_COUNT_MAX + 1)])
            fixed = len("<structure>loop</structure><operators></operators><count>5</count>")
            for rule, size, pos in placements:
                k = _fit_list(budget - head - fixed - pos.size, size, 1, width)
                if k:
                    body = (
                        f'<structure>loop</structure><operators>" {_list(rule, 1, k)} '
                        f'"</operators><count>" ({counts}) "</count>"'
                    )
                    add(body, fixed + k * size + 2 * (k - 1), pos)
        if "conditional" in structures and names.checkers and names.plain and room >= 3:
            fixed = len(
                "<structure>conditional</structure><condition></condition><on_fail></on_fail>"
                "<on_pass></on_pass>"
            ) + _max_len(names.checkers)
            for rule, size, pos in placements:
                on_pass = f'({rule} | "done")' if room >= 4 else '"done"'
                body = (
                    f'<structure>conditional</structure><condition>" checker "</condition>'
                    f'<on_fail>" {rule} "</on_fail><on_pass>" {on_pass} "</on_pass>"'
                )
                add(body, fixed + size + (max(size, 4) if room >= 4 else 4), pos)

        # Edits of existing nodes.
        delete = [n.id for n in graph.walk() if _deletable(graph, n.id, canvas.library)]
        if delete:
            alts.append(_target_alt("delete", delete, "", 0))
        by_class: dict[str, list[str]] = {"op_plain": [], "op_all": [], "checker": []}
        for i, step in enumerate(steps):
            seen = first_parallel is not None and first_parallel < i
            if step.kind == "operator":
                by_class["op_all" if seen else "op_plain"].append(step.id)
                continue
            for j, child in enumerate(step.children):
                if step.name == "parallel":
                    cls = "op_plain"
                elif step.name == "conditional" and j == 0:
                    cls = "checker"
                else:
                    cls = "op_all" if seen else "op_plain"
                by_class[cls].append(child)
        sizes = {"op_plain": plain, "op_all": every, "checker": _max_len(names.checkers)}
        for cls, ids in by_class.items():
            if ids and (cls != "checker" or names.checkers) and sizes[cls]:
                body = f'"<operator>" {cls} "</operator>"'
                alts.append(_target_alt("modify", ids, body, 21 + sizes[cls]))
        loops = [n.id for n in steps if n.name == "loop"]
        if loops:
            counts = _choice([str(c) for c in range(LOOP_COUNT_MIN, LOOP_COUNT_MAX + 1)])
            alts.append(_target_alt("modify", loops, f'"<count>" ({counts}) "</count>"', 16))

        fitting = [a for a in alts if a.size <= budget]
        if not fitting and alts:  # best effort: the shortest actions
            shortest = min(a.size for a in alts)
            fitting = [a for a in alts if a.size == shortest]
        longest = max((a.size for a in fitting), default=0)
        think = min(self.max_think_chars, budget - longest - _THINK_FIXED)

        # set_prompt on an operator node: its prompt gets what thinking leaves.
        operators = [n.id for n in graph.walk() if n.kind == "operator"]
        sp_fixed = len("<action>set_prompt</action><target></target><prompt></prompt>")
        sp_fixed += max((len(t) for t in operators), default=0)
        think_block = _THINK_FIXED + think if think >= 0 else 0
        prompt = min(self.max_prompt_chars, budget - think_block - sp_fixed)
        if operators and prompt >= 0:
            body = f'"<prompt>" {_text(prompt)} "</prompt>"'
            fitting.append(_target_alt("set_prompt", operators, body, _PROMPT_FIXED + prompt))
        rules.append("body ::= " + " | ".join(f"({a.expr})" for a in fitting))
        size = max((a.size for a in fitting), default=0)
        return self._assemble(rules, BUILDING, size, think)

    def _assemble(self, rules: list[str], state: str, body: int, think: int) -> ActionConstraint:
        if think >= 0:
            rules = [
                'root ::= ("<think>" ' + _text(think) + ' "</think>" "\\n"?)? body',
                *rules,
            ]
            size = body + _THINK_FIXED + think
        else:
            rules = ["root ::= body", *rules]
            size = body
        rules.append(f"text ::= {_TEXT}")
        return ActionConstraint("\n".join(rules) + "\n", state, size)

    def _library_names(self, library: OperatorLibrary) -> _Names:
        held = self._names.get(id(library))
        if held is not None and held[0] is library:
            return held[1]
        names = _Names.of(library)
        self._names[id(library)] = (library, names)
        return names


@dataclass(frozen=True)
class _Names:
    """The library's operator names that round-trip through the parser, by role."""

    plain: list[str]
    ensemble: list[str]
    checkers: list[str]

    @classmethod
    def of(cls, library: OperatorLibrary) -> _Names:
        plain, ensemble, checkers = [], [], []
        for spec in library:
            parsed = parse_action(format_action(Action("add", operator=spec.name)))
            if not isinstance(parsed, Action) or parsed.operator != spec.name:
                continue  # a name the parser cannot read back (spaces, separators, "loop")
            (ensemble if spec.category == "ensemble" else plain).append(spec.name)
            if spec.is_checker:
                checkers.append(spec.name)
        return cls(plain, ensemble, checkers)


# ---------------------------------------------------------------------------- helpers
def _signature(graph: WorkflowGraph) -> tuple:
    """What the grammar depends on: each step's id, name, count and children (ids, names)."""
    out = []
    for nid in graph.sequence:
        node = graph.node(nid)
        kids = tuple((c, graph.node(c).name) for c in node.children)
        out.append((nid, node.name, node.count, kids))
    return tuple(out)


def _deletable(graph: WorkflowGraph, node_id: str, library: OperatorLibrary) -> bool:
    """Whether the canvas would accept deleting ``node_id`` (the same edit and validation)."""
    trial = graph.copy()
    try:
        trial.remove(node_id)
    except GraphEditError:
        return False
    return not trial.validate(library)


def _literal(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _choice(options: list[str]) -> str:
    return " | ".join(_literal(o) for o in options) if options else '""'


def _max_len(options: list[str]) -> int:
    return max((len(o.encode()) for o in options), default=0)


def _text(n: int) -> str:
    return f"text{{0,{n}}}" if n > 0 else '""'


def _list(rule: str, least: int, k: int) -> str:
    """``least..k`` names of ``rule``, comma-separated (what `<operators>` holds)."""
    if k <= 1:
        return rule
    return f'{rule} ("," " " {rule}){{{least - 1},{k - 1}}}'


def _fit_list(room: int, name: int, least: int, most: int) -> int:
    """The longest list (``least..most`` names of at most ``name`` bytes, ", " between) that
    fits in ``room`` bytes; 0 if not even ``least`` fits."""
    k = most
    while k >= least and k * name + 2 * (k - 1) > room:
        k -= 1
    if k < least:
        return 0
    return k


def _position(positions: range) -> _Alt:
    if not positions:
        return _Alt('""', 0)
    values = [str(p) for p in positions]
    expr = f'("<position>" ({_choice(values)}) "</position>")'
    return _Alt(expr, len("<position></position>") + _max_len(values))


def _add_size(body: int, position: _Alt) -> int:
    return len("<action>add</action>") + body + position.size


def _target_alt(action: str, targets: list[str], rest: str, rest_size: int) -> _Alt:
    ids = _choice(targets)
    expr = f'"<action>{action}</action><target>" ({ids}) "</target>" {rest}'.rstrip()
    fixed = len(f"<action>{action}</action><target></target>") + _max_len(targets)
    return _Alt(expr, fixed + rest_size)


__all__ = ["ActionConstraint", "ActionGrammar"]
