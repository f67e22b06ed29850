"""Record parser for APPS: programming problems judged on hidden input/output cases.

A problem is either *standard input* (the program reads stdin and prints; ``input_output`` has
no ``fn_name``) or *call-based* (``fn_name`` names a function, or a method of ``class
Solution`` in the starter code, called with each case's arguments). The question says which,
so the policy and every operator write the right kind of program.

`Task.tests` holds one JSON document per case, ``{"input": ..., "output": ...}``, exactly as
``input_output`` gives them (stdin text or a list of arguments; the expected stdout or return
value). `flowsteer.rewards.apps_answer` runs them; they are not Python snippets.

`Task.public_tests` holds, in the same form, the cases the statement itself shows (its
examples), at most `MAX_PUBLIC`: a case is public when its input and its output both appear in
the statement's text (whitespace-insensitive, on token boundaries; a call's arguments and
return value as compact JSON). APPS does not mark which cases are the examples, so this is the
only evidence that a case is no secret; a case that appears nowhere in the statement is never
public. The Programmer and Test operators run these.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any

from flowsteer.tasks.record import RecordError, str_field
from flowsteer.tasks.task import Task

STDIN_INSTRUCTION = (
    "Write a complete Python program that reads the input from standard input and writes the "
    "answer to standard output, in exactly the format described."
)
CALL_INSTRUCTION = (
    "Complete the starter code below: the function `{fn}` is called with each test's arguments "
    "and must return the answer (do not read input or print it)."
)


MAX_PUBLIC = 3
_JSON_SPACE = re.compile(r"\s*([,\[\]{}:])\s*")


def _flat(text: str) -> str:
    return " ".join(text.split())


def _appears(shown: str, statement: str) -> bool:
    """Whether ``shown`` occurs in ``statement`` as whole tokens (whitespace-insensitive)."""
    shown = _flat(shown)
    if not shown:
        return False
    pattern = rf"(?<![\w.]){re.escape(shown)}(?![\w.])"
    return re.search(pattern, _flat(statement)) is not None


def _compact(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def shown_in_statement(statement: str, case_input: Any, output: Any, call_based: bool) -> bool:
    """Whether a case is one of the statement's examples (module docstring).

    Example:
        >>> shown_in_statement("Input\\n3\\n1 2 3\\n\\nOutput\\n6\\n", "3\\n1 2 3\\n", "6\\n", False)
        True
        >>> shown_in_statement("Input: nums = [2,7], k = 9\\nOutput: [0,1]", [[2, 7], 9], [[0, 1]], True)
        True
        >>> shown_in_statement("Input: nums = [2,7], k = 9", [[2, 7], 8], [[0, 1]], True)
        False
    """
    if not call_based:
        lines = "\n".join(case_input) if isinstance(case_input, list) else str(case_input)
        wanted = "\n".join(output) if isinstance(output, list) else str(output)
        return _appears(lines, statement) and _appears(wanted, statement)
    if not isinstance(case_input, list):
        return False
    if isinstance(output, list) and len(output) == 1:  # APPS wraps a return value in a list
        output = output[0]
    tight = _JSON_SPACE.sub(r"\1", statement)
    shown = [_compact(arg) for arg in case_input] + [_compact(output)]
    return all(_appears(_JSON_SPACE.sub(r"\1", text), tight) for text in shown)


def _json_field(record: Mapping[str, Any], field: str) -> Any:
    """A field APPS publishes as a JSON string (``solutions``, ``input_output``)."""
    value = record.get(field)
    if not isinstance(value, str):
        return value
    if not value.strip():
        return None
    try:
        return json.loads(value)
    except json.JSONDecodeError as err:
        raise RecordError(field, f"not valid JSON: {err}") from None


def apps_cases(record: Mapping[str, Any]) -> tuple[list[Any], list[Any], str | None]:
    """The test inputs, expected outputs and ``fn_name`` of an APPS record.

    Raises:
        RecordError: ``input_output`` is missing, not JSON, or its lists are empty or unequal.
    """
    io = _json_field(record, "input_output")
    if io is None:
        raise RecordError("input_output", "missing or empty: the problem has no test cases")
    if not isinstance(io, Mapping):
        raise RecordError("input_output", f"expected a JSON object, got {type(io).__name__}")
    inputs, outputs = io.get("inputs"), io.get("outputs")
    if not isinstance(inputs, list) or not isinstance(outputs, list):
        raise RecordError("input_output", "expected 'inputs' and 'outputs' lists")
    if not inputs or len(inputs) != len(outputs):
        raise RecordError(
            "input_output", f"{len(inputs)} inputs and {len(outputs)} outputs (need equal, >= 1)"
        )
    fn_name = io.get("fn_name")
    if fn_name is not None and (not isinstance(fn_name, str) or not fn_name.isidentifier()):
        raise RecordError("input_output", f"fn_name {fn_name!r} is not a Python identifier")
    return inputs, outputs, fn_name


def parse_apps(record: Mapping[str, Any], task_id: str) -> Task:
    """APPS (HF ``codeparrot/apps``): ``problem_id``, ``question``, ``solutions`` and
    ``input_output`` (JSON strings), ``starter_code``, ``difficulty``."""
    statement = str_field(record, "question")
    inputs, outputs, fn_name = apps_cases(record)
    solutions = _json_field(record, "solutions") or []
    if not isinstance(solutions, list) or not all(isinstance(s, str) for s in solutions):
        raise RecordError("solutions", "expected a JSON list of program strings")
    starter = record.get("starter_code") or ""
    if not isinstance(starter, str):
        raise RecordError("starter_code", f"expected a string, got {type(starter).__name__}")
    if fn_name is None:
        question = f"{statement.rstrip()}\n\n{STDIN_INSTRUCTION}"
    else:
        question = f"{statement.rstrip()}\n\n{CALL_INSTRUCTION.format(fn=fn_name)}"
        if starter.strip():
            question += f"\n\n```python\n{starter.rstrip()}\n```"
    tests = tuple(
        json.dumps({"input": i, "output": o}, ensure_ascii=False)
        for i, o in zip(inputs, outputs, strict=True)
    )
    public = tuple(
        test
        for test, i, o in zip(tests, inputs, outputs, strict=True)
        if shown_in_statement(statement, i, o, fn_name is not None)
    )[:MAX_PUBLIC]
    meta = {
        "difficulty": record.get("difficulty"),
        "url": record.get("url"),
        "call_based": fn_name is not None,
        "starter_code": starter,
    }
    pid = record.get("problem_id")
    tid = f"apps/{pid}" if pid is not None else task_id
    return Task(
        tid, "apps", "code", question, solutions[0] if solutions else "", tests=tests,
        public_tests=public, entry_point=fn_name, meta=meta,
    )  # fmt: skip
