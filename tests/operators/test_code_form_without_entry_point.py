"""The output-form line operators append for code tasks without a function to define (APPS
standard input, DS-1000) does not ask for a function named None."""

from __future__ import annotations

import asyncio
from pathlib import Path

from flowsteer.llm.scripted import ScriptedBackend
from flowsteer.operators.base import WorkflowState
from flowsteer.operators.formatting import FormatOperator
from flowsteer.operators.solving import answer_form
from flowsteer.tasks import load_tasks

DATA = Path(__file__).parents[1] / "tasks" / "data"


def test_solver_form_for_stdin_gap_and_call_based_tasks():
    stdin = load_tasks("apps", DATA / "apps.jsonl")[0]
    call = load_tasks("apps", DATA / "apps.jsonl")[2]
    gap = load_tasks("ds1000", DATA / "ds1000.jsonl")[0]
    for task in (stdin, gap):
        form = answer_form(task)
        assert "None" not in form and "defines" not in form and "```python" in form
    assert "defines `twoSum`" in answer_form(call)


def test_format_operator_asks_for_the_code_the_problem_asks_for():
    task = load_tasks("ds1000", DATA / "ds1000.jsonl")[0]
    backend = ScriptedBackend(["```python\nresult = df.iloc[List]\n```"])
    state = WorkflowState(task=task, candidate="result = df.iloc[List]")
    output = asyncio.run(FormatOperator().run(state, "Format the answer.", backend))
    (request,) = backend.seen
    assert "the Python code the problem asks for" in request[-1]["content"]
    assert "`None`" not in request[-1]["content"]
    assert output.answer == "result = df.iloc[List]"
