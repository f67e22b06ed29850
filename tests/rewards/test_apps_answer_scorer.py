"""APPS scoring through the sandbox: reference solutions pass, wrong ones fail, and the verdict
comes from the parent's comparison of outputs the candidate cannot forge."""

from __future__ import annotations

import asyncio
import dataclasses
import json
from pathlib import Path

import pytest

from flowsteer.rewards import APPSAnswerScorer, score_answer, score_answer_async
from flowsteer.rewards.apps_answer import call_output_matches, stdout_matches
from flowsteer.tasks import Task, load_tasks

DATA = Path(__file__).parents[1] / "tasks" / "data"
TASKS = {t.id: t for t in load_tasks("apps", DATA / "apps.jsonl")}

WRONG = {
    "apps/4001": "n = int(input())\nprint(max(map(int, input().split())))\n",  # max, not sum
    "apps/4002": "t = int(input())\nfor _ in range(t):\n    a, b = map(int, input().split())\n"
    "    print(a // b)\n",  # integer division
    "apps/4003": "class Solution:\n    def twoSum(self, nums, target):\n        return [0, 1]\n",
    "apps/4004": "def digital_root(n):\n    return sum(int(d) for d in str(n))\n",  # one round
    "apps/4005": "def min_max(lst):\n    return [lst[0], lst[-1]]\n",  # unsorted input fails
}


@pytest.mark.parametrize("task_id", sorted(TASKS))
def test_reference_passes_and_wrong_solution_fails(task_id):
    task = TASKS[task_id]
    assert score_answer(task, task.answer) == 1.0
    assert score_answer(task, f"Here is my program:\n```python\n{task.answer}```") == 1.0
    assert score_answer(task, WRONG[task_id]) == 0.0


def test_every_published_solution_of_the_first_problem_passes():
    record = json.loads((DATA / "apps.jsonl").read_text().splitlines()[0])
    for solution in json.loads(record["solutions"]):
        assert score_answer(TASKS["apps/4001"], solution) == 1.0


def test_stdin_program_may_exit_after_printing_but_not_crash():
    task = TASKS["apps/4001"]
    exits = "import sys\ninput()\nprint(sum(map(int, input().split())))\nsys.exit(0)\nprint('x')\n"
    assert score_answer(task, exits) == 1.0  # the official harness swallows SystemExit too
    crashes = "input()\nprint(sum(map(int, input().split())))\nraise ValueError('after')\n"
    assert score_answer(task, crashes) == 0.0
    hard_exit = (
        "import os\ninput()\nprint(sum(map(int, input().split())), flush=True)\nos._exit(0)\n"
    )
    assert score_answer(task, hard_exit) == 0.0  # os._exit skips the harness: not a clean end


def test_each_case_has_its_own_timeout():
    task = TASKS["apps/4001"]
    slow_on_second = (
        "import time\nn = int(input())\nxs = list(map(int, input().split()))\n"
        "if n == 1:\n    time.sleep(30)\nprint(sum(xs))\n"
    )
    scorer = APPSAnswerScorer(case_timeout=3.0)
    assert scorer(task, slow_on_second) == 0.0


def test_call_based_verdict_is_the_parents_comparison():
    task = TASKS["apps/4004"]
    always_equal = (
        "class Anything:\n    def __eq__(self, other):\n        return True\n"
        "def digital_root(n):\n    return Anything()\n"
    )
    assert score_answer(task, always_equal) == 0.0  # its repr is not a value the parent reads
    printing = "def digital_root(n):\n    print(7)\n    return None\n"
    assert score_answer(task, printing) == 0.0
    numpy_ints = (
        "import numpy\ndef digital_root(n):\n    return numpy.int64((n - 1) % 9 + 1 if n else 0)\n"
    )
    assert score_answer(task, numpy_ints) == 1.0


def test_expected_outputs_never_enter_the_sandboxed_program():
    scorer = APPSAnswerScorer()
    for task in TASKS.values():
        marked = [
            json.dumps({"input": json.loads(t)["input"], "output": f"SENTINEL-{i}"})
            for i, t in enumerate(task.tests)
        ]
        other = dataclasses.replace(task, tests=tuple(marked))
        for (given, _), (same_input, _) in zip(
            scorer.cases(task), scorer.cases(other), strict=True
        ):
            program = scorer.program(other, "pass", same_input)
            assert "SENTINEL" not in program[0] and "SENTINEL" not in (program[1] or "")
            assert program == scorer.program(task, "pass", given)


def test_missing_or_empty_prediction_scores_zero_and_bad_tests_raise():
    task = TASKS["apps/4001"]
    assert score_answer(task, None) == 0.0
    assert score_answer(task, "   ") == 0.0
    broken = Task("apps/x", "apps", "code", "q", "", tests=("assert f() == 1",))
    with pytest.raises(ValueError, match="not APPS cases"):
        score_answer(broken, "print(1)")


def test_async_twin_gives_the_same_scores():
    async def both():
        task = TASKS["apps/4003"]
        return await asyncio.gather(
            score_answer_async(task, task.answer), score_answer_async(task, WRONG["apps/4003"])
        )

    assert asyncio.run(both()) == [1.0, 0.0]


@pytest.mark.parametrize(
    ("stdout", "expected", "same"),
    [
        ("6\n", "6\n", True),
        ("6", "6\n", True),
        ("  6  \n\n", "6", True),
        ("1 2 3 \n4\n", "1 2 3\n4\n", True),  # trailing spaces on a line
        ("0.3333333333\n2.5\n", "0.333333\n2.500000\n", True),  # floats, allclose
        ("0.3344\n", "0.333333\n", False),  # outside the tolerance, also when rounded
        ("3 1 2\n", "1 2 3\n", True),  # a line is a set of tokens (official leniency)
        ("b\na\n", "a\nb\n", True),  # and the lines a set of lines
        ("1.0004 2\n", "1.0 2\n", True),  # rounded to 3 places
        ("1.0006 2\n", "1.0 2\n", False),
        ("YES\n", "NO\n", False),
        ("", "1\n", False),
        ("6\n7\n", "6\n", False),
        ("6\n", ["6"], True),  # expected given as a list of lines
    ],
)
def test_stdout_comparison_table(stdout, expected, same):
    assert stdout_matches(stdout, expected) is same


@pytest.mark.parametrize(
    ("output", "expected", "same"),
    [
        (7, [7], True),
        ([0, 1], [[0, 1]], True),
        ((0, 1), [[0, 1]], True),  # a tuple is a list
        ([(1, 2), (3, 4)], [[[1, 2], [3, 4]]], True),
        ({1: "a"}, [{"1": "a"}], True),  # JSON's string keys read as ints
        ({1: "a"}, {"1": "a"}, True),
        (True, [1], True),  # Python equality, as in the official harness
        (7, [8], False),
        ([7], [[8]], False),
        ("7", [7], False),
    ],
)
def test_call_output_comparison_table(output, expected, same):
    assert call_output_matches(output, expected) is same
