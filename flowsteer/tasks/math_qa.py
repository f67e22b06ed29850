"""Record parser for MathQA: multiple-choice math word problems (five options, a to e).

The options string is published as ``"a ) 38 , b ) 27.675 , c ) 30 , ..."`` (some copies give a
list of ``"a ) 38"`` strings); the question shows them one per line so the policy and every
operator see the choices, and asks for the letter. The gold is the correct letter; the correct
option's value is the one alternative, because `flowsteer.rewards.choice_answer` also accepts
an answer equal to it.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from flowsteer.tasks.record import RecordError, str_field
from flowsteer.tasks.task import Task

LETTERS = "abcde"
# "a ) 38 , b ) 27.675": a letter and ")" start each option, after the start or ", ".
_OPTION_RE = re.compile(r"(?:^|,)\s*\(?([a-e])\s*\)\s*")


def parse_options(options: Any) -> dict[str, str]:
    """The options of a MathQA record as ``{letter: value}``.

    Args:
        options: The published string (``"a ) 38 , b ) 27.675 , ..."``), or a list of
            ``"a ) 38"`` strings.

    Returns:
        The options in letter order.

    Raises:
        RecordError: ``options`` is neither form, or its letters are not a, b, c, ... in order.

    Example:
        >>> parse_options("a ) 38 , b ) 27.675 , c ) 30 , d ) data inadequate , e ) none")
        {'a': '38', 'b': '27.675', 'c': '30', 'd': 'data inadequate', 'e': 'none'}
    """
    if isinstance(options, list | tuple):
        if not all(isinstance(o, str) for o in options):
            raise RecordError("options", "expected a list of strings")
        options = " , ".join(options)
    if not isinstance(options, str):
        raise RecordError("options", f"expected a string, got {type(options).__name__}")
    marks = list(_OPTION_RE.finditer(options))
    letters = "".join(m.group(1) for m in marks)
    if len(letters) < 2 or letters != LETTERS[: len(letters)]:
        raise RecordError("options", f"expected 'a ) ..., b ) ...' options, got {options[:80]!r}")
    found = {}
    for mark, following in zip(marks, [*marks[1:], None], strict=True):
        end = following.start() if following is not None else len(options)
        found[mark.group(1)] = options[mark.end() : end].strip()
    return found


def parse_math_qa(record: Mapping[str, Any], task_id: str) -> Task:
    """MathQA (HF ``math_qa``): ``Problem``, ``options``, ``correct`` (a letter), ``Rationale``,
    ``annotated_formula``, ``category``."""
    problem = str_field(record, "Problem")
    if record.get("options") is None:
        raise RecordError("options", "missing")
    options = parse_options(record["options"])
    correct = str_field(record, "correct").strip().lower()
    if correct not in options:
        raise RecordError("correct", f"{correct!r} is not one of the options {sorted(options)}")
    shown = "\n".join(f"{letter}) {value}" for letter, value in options.items())
    question = (
        f"{problem.strip()}\n\nOptions:\n{shown}\n\n"
        "Choose the correct option and answer with its letter."
    )
    meta = {"options": options}
    for key in ("Rationale", "annotated_formula", "category"):
        if isinstance(record.get(key), str):
            meta[key] = record[key]
    return Task(
        task_id, "math_qa", "math", question, correct, alternatives=(options[correct],), meta=meta
    )
