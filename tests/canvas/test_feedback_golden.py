"""o_exec is deterministic and pinned: one golden file per recognisable situation."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from flowsteer.canvas import Canvas, ExecutionResult, FeedbackRenderer, NodeRecord

GOLDEN = Path(__file__).parent / "golden"
BUILD = [
    "<action>add</action><operator>Programmer</operator>",
    "<action>set_prompt</action><prompt>Write the code.</prompt>",
]
SCENARIOS = {
    "syntax_error": ExecutionResult(errors=["SyntaxError: invalid syntax (line 3)"], calls=1, tokens=80),
    "name_error": ExecutionResult(errors=["NameError: name 'sympy' is not defined"], calls=1, tokens=80),
    "timeout": ExecutionResult(errors=["TimeoutError: sandbox limit 10 s"], calls=1, tokens=80),
    "failed_test": ExecutionResult(
        answer="def f(x): return x",
        trace=[NodeRecord("n1", "Programmer", "def f(x): return x"),
               NodeRecord("n2", "Test", "assert f(2) == 3 failed", passed=False)],
        calls=2, tokens=200,
    ),
    "empty_answer": ExecutionResult(answer="", calls=1, tokens=50),
    "too_long_answer": ExecutionResult(answer="blah " * 400, calls=1, tokens=900),
    "ok": ExecutionResult(answer="42", trace=[NodeRecord("n1", "Verify", "matches", passed=True)], calls=1, tokens=20),
}  # fmt: skip


def check_golden(path: Path, text: str) -> None:
    if os.environ.get("FLOWSTEER_UPDATE_GOLDEN") or not path.exists():
        path.write_text(text, encoding="utf-8")
    assert text == path.read_text(encoding="utf-8"), f"{path.name} changed; see the diff"


@pytest.mark.parametrize("name", sorted(SCENARIOS))
def test_feedback_golden(name, task, scripted_executor_cls, run):
    async def play():
        canvas = Canvas(task, scripted_executor_cls([SCENARIOS[name]]))
        return [await canvas.step(t) for t in BUILD]

    first = run(play())[-1].observation
    second = run(play())[-1].observation
    assert first == second  # deterministic for the same state
    check_golden(GOLDEN / f"feedback_{name}.txt", first)


def test_rejection_golden(task, run):
    canvas = Canvas(task)
    r = run(canvas.step("<action>add</action><operator>Progammer</operator>"))
    check_golden(GOLDEN / "feedback_rejected.txt", r.observation)


def test_truncation_lengths_are_configurable(task, scripted_executor_cls, run):
    fb = FeedbackRenderer(max_answer_chars=10, long_answer_chars=20)
    canvas = Canvas(task, scripted_executor_cls([SCENARIOS["too_long_answer"]]), feedback=fb)
    obs = run(canvas.step(BUILD[0])) and run(canvas.step(BUILD[1])).observation
    assert "answer: blah blah … [1989 more chars]" in obs
    assert "the answer is 1999 characters long" in obs
