"""Record parsers: one per dataset, each reading that dataset's *native* schema into a `Task`.

A parser sees one raw record (a dict, as ``datasets`` yields it) and either returns a `Task` or
raises `RecordError` naming the offending field. `load_tasks` adds the file and record index.
Users add their own dataset with `register_source`.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from flowsteer.tasks.aime import parse_aime
from flowsteer.tasks.apps import parse_apps
from flowsteer.tasks.ds1000 import parse_ds1000
from flowsteer.tasks.math_qa import parse_math_qa
from flowsteer.tasks.open_qa import parse_nq_open, parse_triviaqa
from flowsteer.tasks.record import RecordError, first_present, str_field, str_list_field
from flowsteer.tasks.task import Task, TaskKind

RecordParser = Callable[[Mapping[str, Any], str], Task]


@dataclass(frozen=True)
class Source:
    """A registered dataset: its task kind and the parser for its native records."""

    name: str
    kind: TaskKind
    parse: RecordParser


SOURCES: dict[str, Source] = {}


def register_source(name: str, kind: TaskKind, parse: RecordParser) -> None:
    """Make ``load_tasks(name, ...)`` read records with ``parse(record, task_id)``."""
    SOURCES[name] = Source(name, kind, parse)


# --------------------------------------------------------------------------- math

_NUMBER = re.compile(r"^[-+]?(\d+(\.\d*)?|\.\d+)(/\d+)?$")


def parse_gsm8k(record: Mapping[str, Any], task_id: str) -> Task:
    """GSM8K: ``question`` and ``answer`` (worked solution ending in ``#### <number>``)."""
    question = str_field(record, "question")
    solution = str_field(record, "answer")
    if "####" not in solution:
        raise RecordError("answer", "no '#### <final answer>' line")
    gold = solution.rsplit("####", 1)[1].strip().replace(",", "").rstrip(".")
    if not _NUMBER.match(gold):
        raise RecordError("answer", f"final answer {gold!r} after '####' is not a number")
    return Task(task_id, "gsm8k", "math", question, gold, meta={"solution": solution})


def last_boxed(text: str) -> str | None:
    """The content of the last ``\\boxed{...}`` (or ``\\fbox{...}``), nested braces matched.

    Args:
        text: Any text, e.g. a MATH solution.

    Returns:
        The content between the braces, or None if there is no complete boxed expression.

    Example:
        >>> last_boxed(r"so $\\boxed{\\frac{1}{2}}$ and not \\boxed{3}.")
        '3'
        >>> last_boxed(r"\\boxed{\\frac{a}{b}}")
        '\\\\frac{a}{b}'
    """
    starts = [m.end() for m in re.finditer(r"\\(?:boxed|fbox)\s*", text)]
    for start in reversed(starts):
        if start < len(text) and text[start] == "{":
            depth = 0
            for i in range(start, len(text)):
                if text[i] == "{":
                    depth += 1
                elif text[i] == "}":
                    depth -= 1
                    if depth == 0:
                        return text[start + 1 : i].strip()
        else:  # "\boxed 5": the form without braces takes one token
            token = re.match(r"[^\s$]+", text[start:])
            if token:
                return token.group(0)
    return None


def parse_math(record: Mapping[str, Any], task_id: str) -> Task:
    r"""MATH / MATH-500: ``problem`` plus ``answer``, or the last ``\boxed{}`` of ``solution``."""
    question = str_field(record, "problem")
    solution = record.get("solution") if isinstance(record.get("solution"), str) else ""
    if record.get("answer") is not None:
        gold = str_field(record, "answer").strip()
    else:
        str_field(record, "solution")
        gold = last_boxed(solution)
        if not gold:
            raise RecordError("solution", "no \\boxed{...} answer (and no 'answer' field)")
    meta = {k: record[k] for k in ("level", "type", "subject") if record.get(k) is not None}
    meta["solution"] = solution
    task_id = str(record.get("unique_id") or task_id)
    return Task(task_id, "math", "math", question, gold, meta=meta)


# --------------------------------------------------------------------------- qa


def _hotpot_context(context: Any) -> str:
    """HotpotQA context in either schema: HF ``{title: [...], sentences: [[...]]}`` or the
    original ``[[title, [sentences]], ...]``."""
    if isinstance(context, Mapping):
        titles, sentences = context.get("title"), context.get("sentences")
        if (
            not isinstance(titles, list)
            or not isinstance(sentences, list)
            or len(titles) != len(sentences)
        ):
            raise RecordError(
                "context", "expected {'title': [...], 'sentences': [[...]]} of equal length"
            )
        pairs = list(zip(titles, sentences, strict=True))
    elif isinstance(context, list):
        if not all(isinstance(p, list | tuple) and len(p) == 2 for p in context):
            raise RecordError("context", "expected a list of [title, sentences] pairs")
        pairs = [(p[0], p[1]) for p in context]
    else:
        raise RecordError("context", f"expected paragraphs, got {type(context).__name__}")
    paragraphs = []
    for title, sents in pairs:
        if not isinstance(title, str) or not isinstance(sents, list):
            raise RecordError(
                "context", "each paragraph needs a title string and a list of sentences"
            )
        paragraphs.append(f"{title}: {''.join(str(s) for s in sents).strip()}")
    return "\n\n".join(paragraphs)


def parse_hotpotqa(record: Mapping[str, Any], task_id: str) -> Task:
    """HotpotQA (HF ``hotpot_qa`` or the original JSON): question, answer, context paragraphs."""
    question = str_field(record, "question")
    answer = str_field(record, "answer")
    if record.get("context") is None:
        raise RecordError("context", "missing")
    context = _hotpot_context(record["context"])
    rid = record.get("id") or record.get("_id")
    meta = {k: record[k] for k in ("type", "level") if record.get(k) is not None}
    return Task(str(rid or task_id), "hotpotqa", "qa", question, answer, context=context, meta=meta)


def parse_squad_v2(record: Mapping[str, Any], task_id: str) -> Task:
    """SQuAD v2 (HF flat schema): ``answers.text`` empty means unanswerable, whose gold is ``""``
    exactly as the official evaluation script defines it."""
    question = str_field(record, "question")
    context = str_field(record, "context")
    answers = record.get("answers")
    if not isinstance(answers, Mapping):
        raise RecordError(
            "answers", "missing or not a {'text': [...], 'answer_start': [...]} mapping"
        )
    texts = str_list_field(answers, "text")
    golds = [t for t in texts if t.strip()] or [""]
    meta = {"unanswerable": golds == [""], "title": record.get("title")}
    return Task(
        str(record.get("id") or task_id), "squad_v2", "qa", question, golds[0],
        alternatives=tuple(golds[1:]), context=context, meta=meta,
    )  # fmt: skip


# --------------------------------------------------------------------------- code

_DEF = re.compile(r"^\s*def\s+([A-Za-z_]\w*)\s*\(", re.MULTILINE)
_CALL = re.compile(r"([A-Za-z_]\w*)\s*\(")


def _mbpp_entry_point(code: str, first_test: str) -> str | None:
    """The reference function the tests call (MBPP has no entry_point field)."""
    called = set(_CALL.findall(first_test))
    for name in _DEF.findall(code):
        if name in called:
            return name
    for name in _CALL.findall(first_test.removeprefix("assert")):
        if name not in {
            "assert",
            "set",
            "sorted",
            "list",
            "tuple",
            "abs",
            "round",
            "isclose",
            "math",
        }:
            return name
    return None


def parse_mbpp(record: Mapping[str, Any], task_id: str) -> Task:
    """MBPP (full or sanitized): statement, reference ``code``, ``test_list`` asserts.

    The first assert is shown in the question (it is how MBPP tells the model the function's
    name and signature) and is the public test; every assert, challenge ones included, is hidden.
    """
    field = first_present(record, "text", "prompt")
    statement = str_field(record, field)
    code = str_field(record, "code")
    tests = str_list_field(record, "test_list")
    if not tests:
        raise RecordError("test_list", "empty")
    challenge = str_list_field(record, "challenge_test_list", required=False)
    setup = record.get("test_setup_code") or ""
    imports = str_list_field(record, "test_imports", required=False)
    if not isinstance(setup, str):
        raise RecordError("test_setup_code", f"expected a string, got {type(setup).__name__}")
    setup = "\n".join([*imports, setup]).strip()
    entry = _mbpp_entry_point(code, tests[0])
    if entry is None:
        raise RecordError("test_list", f"cannot find the tested function in {tests[0]!r}")
    question = f"{statement.strip()}\nYour code should pass this test:\n{tests[0]}"
    tid = f"mbpp/{record['task_id']}" if record.get("task_id") is not None else task_id
    return Task(
        tid, "mbpp", "code", question, code, tests=(*tests, *challenge), public_tests=(tests[0],),
        setup_code=setup, entry_point=entry,
    )  # fmt: skip


_DOCSTRING_END = ('"""', "'''")


def doctest_asserts(prompt: str) -> tuple[str, ...]:
    """The ``>>> call`` / ``result`` examples of a docstring as assert statements.

    Only single-line examples whose assert compiles are kept; HumanEval's own examples are taken
    as written (one of them, HumanEval/47, is wrong in the dataset).
    """
    lines = [line.strip() for line in prompt.splitlines()]
    asserts = []
    for call, expected in zip(lines, [*lines[1:], ""], strict=True):
        if (
            not call.startswith(">>>")
            or not expected
            or expected.startswith((">>>", *_DOCSTRING_END))
        ):
            continue
        statement = f"assert {call[3:].strip()} == {expected}"
        try:
            compile(statement, "<doctest>", "exec")
        except SyntaxError:
            continue
        asserts.append(statement)
    return tuple(asserts)


def parse_humaneval(record: Mapping[str, Any], task_id: str) -> Task:
    """HumanEval: the prompt (signature + docstring) is the question; the hidden test is the
    dataset's ``check(candidate)`` source, called on the entry point; the docstring's ``>>>``
    examples are the public tests."""
    prompt = str_field(record, "prompt")
    test = str_field(record, "test")
    entry = str_field(record, "entry_point").strip()
    if not entry.isidentifier():
        raise RecordError("entry_point", f"{entry!r} is not a Python identifier")
    if "def check(" not in test:
        raise RecordError("test", "no 'def check(candidate)' function")
    solution = record.get("canonical_solution") or ""
    if not isinstance(solution, str):
        raise RecordError("canonical_solution", f"expected a string, got {type(solution).__name__}")
    return Task(
        str(record.get("task_id") or task_id), "humaneval", "code", prompt, solution,
        tests=(f"{test}\n\ncheck({entry})\n",), public_tests=doctest_asserts(prompt),
        entry_point=entry,
    )  # fmt: skip


register_source("gsm8k", "math", parse_gsm8k)
register_source("math", "math", parse_math)
register_source("hotpotqa", "qa", parse_hotpotqa)
register_source("squad_v2", "qa", parse_squad_v2)
register_source("mbpp", "code", parse_mbpp)
register_source("humaneval", "code", parse_humaneval)

# The six out-of-distribution evaluation sources (their parsers live in their own modules).

register_source("triviaqa", "qa", parse_triviaqa)
register_source("nq_open", "qa", parse_nq_open)
register_source("math_qa", "math", parse_math_qa)
register_source("aime", "math", parse_aime)
register_source("apps", "code", parse_apps)
register_source("ds1000", "code", parse_ds1000)
