"""Programmer and Test on APPS (stdin/stdout, call-based) and DS-1000 (gap code in a context).

Real sandbox runs on the hand-written records of ``tests/tasks/data``; the backend is scripted.
APPS candidates run on the statement's examples only; DS-1000 candidates run in the problem's
context for errors only, so a right and a wrong answer that both run get the same feedback.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

from flowsteer.llm.scripted import ScriptedBackend
from flowsteer.operators.base import OperatorSettings, WorkflowState
from flowsteer.operators.solving import CustomOperator, ProgrammerOperator
from flowsteer.operators.verification import TestOperator
from flowsteer.tasks import load_tasks

DATA = Path(__file__).parents[1] / "tasks" / "data"
APPS = {t.id: t for t in load_tasks("apps", DATA / "apps.jsonl")}
DS1000 = {t.id: t for t in load_tasks("ds1000", DATA / "ds1000.jsonl")}
SETTINGS = OperatorSettings(programmer_retries=1, sandbox_timeout_s=10.0)

SUM_RIGHT = "n = int(input())\nprint(sum(map(int, input().split())))\n"
SUM_WRONG = "n = int(input())\nprint(n)\n"  # prints the count, not the sum


def fenced(code: str) -> str:
    return f"```python\n{code}```"


def program(task, *replies):
    backend = ScriptedBackend(list(replies))
    out = asyncio.run(ProgrammerOperator(SETTINGS).run(WorkflowState(task), "Solve.", backend))
    return out, backend


def check(task, candidate):
    state = WorkflowState(task, candidate=candidate)
    return asyncio.run(TestOperator(SETTINGS).run(state, "Test it.", ScriptedBackend([])))


def hidden_cases(task):
    return [json.loads(t) for t in task.tests if t not in task.public_tests]


# --------------------------------------------------------------------------- APPS


def test_programmer_runs_a_stdin_program_on_the_example_and_retries_on_a_wrong_output():
    task = APPS["apps/4001"]
    out, backend = program(task, fenced(SUM_WRONG), fenced(SUM_RIGHT))
    assert out.error is None and out.answer == SUM_RIGHT.strip("\n")
    retry = backend.seen[1][-1]["content"]
    assert "example 1 (input '3\\n1 2 3'): expected '6', got '3'" in retry
    for case in hidden_cases(task):  # the hidden cases never reach the model
        assert case["input"].split()[-1] not in retry


def test_programmer_accepts_a_right_stdin_program_first_time():
    # The old Programmer ran it with empty stdin: EOFError on every try.
    out, backend = program(APPS["apps/4001"], fenced(SUM_RIGHT))
    assert out.error is None and out.answer == SUM_RIGHT.strip("\n") and len(backend.seen) == 1


def test_programmer_calls_a_class_solution_method_on_the_example():
    task = APPS["apps/4003"]
    right = task.answer
    wrong = "class Solution:\n    def twoSum(self, nums, target):\n        return [1, 0]\n"
    out, backend = program(task, fenced(wrong), fenced(right))
    assert out.error is None and out.answer == right.strip("\n")
    assert "expected '[0, 1]', got '[1, 0]'" in backend.seen[1][-1]["content"]


def test_test_operator_reports_stdin_mismatches_and_passes_a_right_program():
    task = APPS["apps/4001"]
    bad = check(task, fenced(SUM_WRONG))
    assert bad.passed is False and "failed 1/1 examples" in bad.feedback
    good = check(task, SUM_RIGHT)
    assert good.passed is True and "passed all 1 examples" in good.feedback
    crash = check(task, "print(1 / 0)\n")
    assert crash.passed is False and "ZeroDivisionError" in crash.feedback


def test_test_operator_calls_a_plain_function_on_each_example():
    task = APPS["apps/4004"]  # two examples shown: 16 -> 7, 942 -> 6
    digits = (
        "def digital_root(n):\n    return n if n < 10 else digital_root(sum(map(int, str(n))))\n"
    )
    assert check(task, digits).passed is True
    once = "def digital_root(n):\n    return sum(map(int, str(n)))\n"  # 942 -> 15
    out = check(task, once)
    assert out.passed is False and "failed 1/2 examples" in out.feedback
    assert "expected '6', got '15'" in out.feedback


def test_a_problem_without_examples_is_not_vouched_for_but_programmer_keeps_the_code():
    task = APPS["apps/4005"]  # its statement shows no case
    code = "def min_max(xs):\n    return [min(xs), max(xs)]\n"
    out = check(task, code)
    assert out.passed is False and "shows no example" in out.feedback
    made, backend = program(task, fenced(code))
    assert made.answer == code.strip("\n") and len(backend.seen) == 1


# --------------------------------------------------------------------------- DS-1000


def test_programmer_accepts_gap_code_that_runs_in_the_context():
    # The old Programmer ran the gap code on its own: NameError on `df`, every try.
    task = DS1000["ds1000/0"]
    out, backend = program(task, fenced("result = df.iloc[List]\n"))
    assert out.error is None and out.answer == "result = df.iloc[List]" and len(backend.seen) == 1


def test_programmer_feeds_back_an_error_raised_inside_the_context():
    task = DS1000["ds1000/0"]
    out, backend = program(task, fenced("result = dff.iloc[List]\n"), fenced("x = 1\n"))
    assert "NameError: name 'dff' is not defined" in backend.seen[1][-1]["content"]
    assert out.answer is None and "did not set `result`" in out.error


def test_test_operator_gives_a_right_and_a_wrong_answer_the_same_feedback():
    task = DS1000["ds1000/0"]
    right = check(task, "result = df.iloc[List]")
    wrong = check(task, "result = df.iloc[sorted(List)]")  # runs, but the hidden test fails
    assert right.passed is wrong.passed is True
    assert right.feedback == wrong.feedback and "is not checked" in right.feedback


@pytest.mark.slow
def test_function_gap_errors_and_missing_libraries():
    task = DS1000["ds1000/150"]
    assert check(task, "    return s.value_counts().sort_index()\n").passed is True
    out = check(task, "return s.value_counts()\n")  # not indented into f's body
    assert out.passed is False and "IndentationError" in out.feedback
    tf = DS1000["ds1000/666"]
    out = check(tf, "result = tf.reduce_sum(x)")
    assert (
        out.passed is False and "cannot run here" in out.feedback and "tensorflow" in out.feedback
    )
    made, backend = program(tf, fenced("result = tf.reduce_sum(x)\n"))
    assert made.answer == "result = tf.reduce_sum(x)" and len(backend.seen) == 1


# --------------------------------------------------------------------------- prompts


def prompt_of(task) -> str:
    backend = ScriptedBackend(["<answer>a</answer>"])
    asyncio.run(CustomOperator(SETTINGS).run(WorkflowState(task), "Solve it.", backend))
    return backend.seen[0][-1]["content"]


def test_apps_prompts_say_stdin_or_call_by_kind():
    stdin = prompt_of(APPS["apps/4001"])
    assert "reads the input from standard input and writes the answer to standard output" in stdin
    call = prompt_of(APPS["apps/4003"])
    assert "standard input" not in call and "`twoSum` is called with each test's arguments" in call
    assert "class Solution:\n    def twoSum(self" in call


def test_ds1000_prompt_asks_for_the_gap_code_only():
    text = prompt_of(DS1000["ds1000/0"])
    assert "Write only the code that goes where the solution belongs" in text
    assert "Do not repeat the given setup code" in text and "test_execution" not in text


def test_math_qa_prompt_shows_every_option():
    task = load_tasks("math_qa", DATA / "math_qa.jsonl")[0]
    text = prompt_of(task)
    record = json.loads((DATA / "math_qa.jsonl").read_text().splitlines()[0])
    for option in record["options"].split(" , "):
        letter, value = option.split(" ) ", 1)
        assert f"{letter}) {value.strip()}" in text or f"{letter} ) {value.strip()}" in text
