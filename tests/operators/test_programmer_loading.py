"""Programmer loads a program the way the reward does (not as ``__main__``) and normalises values.

Real sandbox runs; the backend is scripted.
"""

from __future__ import annotations

import asyncio

import pytest

from flowsteer.llm.scripted import ScriptedBackend
from flowsteer.operators.base import OperatorSettings, WorkflowState
from flowsteer.operators.ensemble import ScEnsembleOperator
from flowsteer.operators.solving import ProgrammerOperator
from flowsteer.rewards.code_answer import CodeAnswerScorer
from flowsteer.rewards.math_answer import MathAnswerScorer
from flowsteer.tasks.task import Task

CODE = Task(
    "mbpp/2",
    "mbpp",
    "code",
    "Write double(n) that returns twice n.",
    "",
    entry_point="double",
    tests=("assert double(2) == 4", "assert double(-1) == -2"),
)
DEMO = (
    "def double(n):\n    return 2 * n\n\n\n"
    'if __name__ == "__main__":\n    n = int(input("n? "))\n    print(double(n))\n'
)


def program(task: Task, *replies: str, retries: int = 0):
    backend = ScriptedBackend(list(replies))
    op = ProgrammerOperator(OperatorSettings(programmer_retries=retries, sandbox_timeout_s=10.0))
    out = asyncio.run(op.run(WorkflowState(task), "Write it.", backend))
    return out, backend


def test_a_correct_program_with_an_input_demo_is_accepted_as_the_reward_accepts_it():
    out, backend = program(CODE, f"```python\n{DEMO}```", retries=1)
    assert out.error is None and backend.calls == 1  # no retry was needed
    assert "def double(" in out.answer
    assert CodeAnswerScorer(timeout=20.0)(CODE, out.answer) == 1.0


def test_a_program_that_does_not_define_the_entry_point_is_still_rejected():
    out, _ = program(CODE, "```python\ndef twice(n):\n    return 2 * n\n```")
    assert out.answer is None and out.error.startswith("NameError")


def test_a_math_program_with_a_main_demo_returns_solve_normalised():
    reply = (
        "```python\nfrom fractions import Fraction\n\n\ndef solve():\n    return Fraction(1, 2)\n"
        '\n\nif __name__ == "__main__":\n    print(solve(), input())\n```'
    )
    task = Task("math/1", "math", "math", "Half of one?", r"\frac{1}{2}")
    out, _ = program(task, reply)
    assert out.error is None and out.answer == "1/2"
    assert MathAnswerScorer()(task, out.answer) == 1.0


@pytest.mark.parametrize(
    ("body", "expected"),
    [("return 0.1 + 0.2", "0.3"), ("return 1.1 * 3", "3.3"), ("return 36 / 2", "18")],
)
def test_float_noise_is_rounded_away(body, expected):
    task = Task("gsm8k/1", "gsm8k", "math", "q", expected)
    out, _ = program(task, f"```python\ndef solve():\n    {body}\n```")
    assert out.answer == expected and MathAnswerScorer()(task, out.answer) == 1.0


def test_a_printed_fraction_is_normalised_too():
    task = Task("math/2", "math", "math", "q", "3/4")
    out, _ = program(task, "```python\nfrom fractions import Fraction\nprint(Fraction(3, 4))\n```")
    assert out.answer == "3/4"
    out, _ = program(
        task, "```python\nfrom fractions import Fraction\nprint(repr(Fraction(3, 4)))\n```"
    )
    assert out.answer == "3/4"


def test_votes_group_a_fraction_with_its_decimal():
    task = Task("math/3", "math", "math", "q", "0.5")
    state = WorkflowState(task, candidates=("Fraction(1, 2)", "0.5", "1/3"))
    out = asyncio.run(ScEnsembleOperator().run(state, "Vote.", ScriptedBackend([])))
    assert out.text.startswith("majority 2/3") and MathAnswerScorer()(task, out.answer) == 1.0
