"""o_exec is deterministic and pinned: one golden file per recognisable situation."""

from __future__ import annotations

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


@pytest.mark.parametrize("name", sorted(SCENARIOS))
def test_feedback_golden(name, task, scripted_executor_cls, run, check_golden):
    async def play():
        canvas = Canvas(task, scripted_executor_cls([SCENARIOS[name]]))
        return [await canvas.step(t) for t in BUILD]

    first = run(play())[-1].observation
    second = run(play())[-1].observation
    assert first == second  # deterministic for the same state
    check_golden(GOLDEN / f"feedback_{name}.txt", first)


def test_rejection_golden(task, run, check_golden):
    canvas = Canvas(task)
    r = run(canvas.step("<action>add</action><operator>Progammer</operator>"))
    check_golden(GOLDEN / "feedback_rejected.txt", r.observation)


def test_truncation_lengths_are_configurable(task, scripted_executor_cls, run):
    fb = FeedbackRenderer(max_answer_chars=10, long_answer_chars=20)
    canvas = Canvas(task, scripted_executor_cls([SCENARIOS["too_long_answer"]]), feedback=fb)
    obs = run(canvas.step(BUILD[0])) and run(canvas.step(BUILD[1])).observation
    assert "answer: blah blah … [1989 more chars]" in obs
    assert "the answer is 1999 characters long" in obs


def _result_lines(fb: FeedbackRenderer, result: ExecutionResult) -> list[str]:
    from flowsteer.canvas import WorkflowGraph

    text = fb.render(
        status="accepted", message="m", graph=WorkflowGraph(), stats="s", turn=1, max_turns=2,
        result=result,
    )  # fmt: skip
    return text.splitlines()


def test_error_length_and_count_are_configurable_and_the_rest_is_counted():
    fb = FeedbackRenderer(max_error_chars=12, max_errors=2)
    errors = ["ValueError: " + "x" * 30, "KeyError: k", "OSError: disk", "OSError: again"]
    lines = _result_lines(fb, ExecutionResult(answer="1", errors=errors))
    assert "errors: ValueError: … [30 more chars] | KeyError: k (+2 more)" in lines


def test_suggestions_recognise_each_failure_and_only_it():
    fb = FeedbackRenderer(long_answer_chars=20)

    def says(result):
        return [s.split(":")[0] for s in fb.suggestions(result)]

    assert says(ExecutionResult(answer="1", errors=["sandbox: the run timed out"])) == [
        "the run timed out"
    ]
    verify_failed = ExecutionResult(
        answer="1", trace=[NodeRecord("n2", "Verify", "wrong units", passed=False)]
    )
    assert says(verify_failed) == []  # a failed Verify is not a failed test
    test_failed = ExecutionResult(
        answer="1",
        trace=[NodeRecord("n3", "Test", "f(2) != 3", passed=False)] * 2,
    )
    assert fb.suggestions(test_failed)[0].startswith("a test failed (n3):")
    assert says(ExecutionResult(answer="x" * 20)) == []
    assert says(ExecutionResult(answer="x" * 21)) == ["the answer is 21 characters long"]
