"""Operator implementations: parsers on messy output, Programmer's retries in the real sandbox,
Test on a real HumanEval task's public tests, ensemble votes, Format's final forms."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

from flowsteer.llm.backend import Completion
from flowsteer.llm.scripted import ScriptedBackend
from flowsteer.operators.base import OperatorSettings, WorkflowState
from flowsteer.operators.ensemble import AggregateOperator, ScEnsembleOperator
from flowsteer.operators.formatting import FormatOperator
from flowsteer.operators.library import OperatorLibrary
from flowsteer.operators.parsing import (
    final_form,
    parse_answer,
    parse_choice,
    parse_verdict,
    vote_key,
)
from flowsteer.operators.planning import PlanOperator
from flowsteer.operators.registry import OperatorImplError, build_operator
from flowsteer.operators.revision import ReviseOperator
from flowsteer.operators.solving import ProgrammerOperator
from flowsteer.operators.spec import OperatorSpec
from flowsteer.operators.verification import ReviewOperator, TestOperator, VerifyOperator
from flowsteer.tasks.sources import parse_humaneval
from flowsteer.tasks.task import Task

REPO = Path(__file__).resolve().parents[2]
MATH = Task("gsm8k/0", "gsm8k", "math", "Janet sells 9 eggs at $2. How much?", "18")
QA = Task("hq/0", "hotpotqa", "qa", "Who wrote Hamlet?", "William Shakespeare", context="...")


@pytest.fixture(scope="module")
def humaneval() -> Task:
    # the real record, parsed by the real loader's parser (load_tasks imports heavy readers)
    line = (REPO / "flowsteer/examples/data/humaneval_sample.jsonl").read_text().splitlines()[0]
    return parse_humaneval(json.loads(line), "HumanEval/0")


def run(op, state, prompt="Do it.", backend=None):
    backend = backend if backend is not None else ScriptedBackend([])
    return asyncio.run(op.run(state, prompt, backend))


# ------------------------------------------------------------------------------ parsers
@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Reasoning...\n<verdict>PASS</verdict>", True),
        ("<Verdict> fail </Verdict> the total is off", False),
        ("<verdict>not correct</verdict>", False),
        ("**Verdict:** PASS", True),
        ("Verdict - FAIL: wrong units", False),
        ("The answer is incorrect because 9*2 is 18.", False),
        ("Yes.\nThe candidate is right.", True),
        ("No, it is wrong.", False),
        ("Result: not correct", False),
        ("Hmm, I cannot tell.", None),
        ("", None),
    ],
)
def test_parse_verdict_reads_messy_checker_output(text, expected):
    assert parse_verdict(text) is expected


@pytest.mark.parametrize(
    ("text", "task", "expected"),
    [
        ("So 9*2 = 18.\n<answer> 18 </answer>", MATH, "18"),
        ("9 * 2 = 18, so she makes $18 per day.", MATH, "18"),
        ("The result is \\boxed{18}.", MATH, "18"),
        ("Thinking...\nFinal answer: William Shakespeare", QA, "William Shakespeare"),
        ("It was written by\nWilliam Shakespeare", QA, "William Shakespeare"),
        ("<answer>William Shakespeare", QA, "William Shakespeare"),  # unclosed tag
    ],
)
def test_parse_answer_by_task_kind(text, task, expected):
    assert parse_answer(text, task) == expected


def test_parse_answer_code_prefers_the_block_defining_the_entry_point(humaneval):
    text = (
        "Helper:\n```python\ndef helper():\n    pass\n```\nSolution:\n```python\n"
        "def has_close_elements(numbers, threshold):\n    return False\n```\nDone."
    )
    assert parse_answer(text, humaneval).startswith("def has_close_elements(")


def test_vote_key_and_choice_and_final_form(humaneval):
    assert vote_key("**$18.00**", MATH) == vote_key("18", MATH) != vote_key("19", MATH)
    assert vote_key("The Beatles!", QA) == vote_key("beatles", QA)
    assert parse_choice("<choice>B</choice>", 3) == 1
    assert parse_choice("Candidate (C) is best", 3) == 2
    assert parse_choice("<choice>2</choice>", 3) == 1
    assert parse_choice("(D)", 3) is None
    assert final_form("The answer is $1,234.", MATH) == "1234"
    assert final_form("<answer>**William Shakespeare.**</answer>", QA) == "William Shakespeare"
    assert final_form("```python\ndef other():\n    pass\n```", humaneval) is None


# ---------------------------------------------------------------------------- Programmer
def test_programmer_retries_with_the_error_and_returns_the_value():
    backend = ScriptedBackend(
        [
            "```python\ndef solve():\n    return eggs * 2\n```",
            "Fixed:\n```python\ndef solve():\n    eggs = 9\n    return eggs * 2.0\n```",
        ]
    )
    out = run(ProgrammerOperator(), WorkflowState(MATH), backend=backend)
    assert out.error is None and out.answer == "18"
    retry_prompt = backend.seen[1][-1]["content"]
    assert "NameError: name 'eggs' is not defined" in retry_prompt
    assert backend.seen[1][-2]["role"] == "assistant"


def test_programmer_gives_up_after_k_retries_with_the_last_error():
    backend = ScriptedBackend(["```python\ndef solve(:\n```"], when_exhausted="repeat_last")
    op = ProgrammerOperator(OperatorSettings(programmer_retries=1))
    out = run(op, WorkflowState(MATH), backend=backend)
    assert backend.calls == 2
    assert out.answer is None and out.error.startswith("SyntaxError")


def test_programmer_reports_sandbox_timeouts_and_empty_results():
    backend = ScriptedBackend(
        [
            "```python\ndef solve():\n    while True:\n        pass\n```",
            "```python\nx = 1\n```",
            "```python\nprint('the answer is')\nprint(18)\n```",
        ]
    )
    op = ProgrammerOperator(OperatorSettings(sandbox_timeout_s=1.0, programmer_retries=2))
    out = run(op, WorkflowState(MATH), backend=backend)
    assert "TimeoutError" in backend.seen[1][-1]["content"]
    assert "EmptyAnswer" in backend.seen[2][-1]["content"]
    assert out.answer == "18"  # the last printed line when there is no solve()


def test_programmer_on_a_code_task_returns_a_complete_program(humaneval):
    body = humaneval.answer  # the canonical completion, as a model often writes it
    backend = ScriptedBackend([f"```python\n{body}\n```"])
    out = run(ProgrammerOperator(), WorkflowState(humaneval), backend=backend)
    assert out.error is None
    assert "def has_close_elements(" in out.answer and "from typing import List" in out.answer


def test_backend_error_value_is_reported_not_raised():
    backend = ScriptedBackend([Completion.failure("HTTP 429: slow down")])
    out = run(PlanOperator(), WorkflowState(MATH), backend=backend)
    assert out.error == "BackendError: HTTP 429: slow down"


# ---------------------------------------------------------------------------------- Test
def test_test_operator_passes_the_canonical_solution(humaneval):
    state = WorkflowState(humaneval, candidate=humaneval.question + humaneval.answer)
    out = run(TestOperator(), state)
    assert out.passed is True and out.feedback == "passed all 2 public tests"


def test_test_operator_reports_the_failing_assertion_with_the_value(humaneval):
    wrong = "def has_close_elements(numbers, threshold):\n    return True\n"
    out = run(TestOperator(), WorkflowState(humaneval, candidate=wrong))
    assert out.passed is False
    assert "failed 1/2 public tests" in out.feedback
    assert "assert has_close_elements([1.0, 2.0, 3.0], 0.5) == False" in out.feedback
    assert "AssertionError (got True)" in out.feedback


def test_test_operator_on_broken_code_and_hidden_tests_untouched(humaneval):
    out = run(TestOperator(), WorkflowState(humaneval, candidate="def has_close_elements(:"))
    assert out.passed is False and "SyntaxError" in out.feedback
    assert "check(" not in out.feedback  # the hidden test never runs here


def test_test_operator_without_public_tests(humaneval):
    bare = Task("m/1", "mbpp", "code", "Write f.", "", entry_point="f")
    out = run(TestOperator(), WorkflowState(bare, candidate="def f():\n    return 1\n"))
    assert out.passed is True and "no public tests" in out.feedback
    backend = ScriptedBackend(["Checked. <verdict>PASS</verdict>"])
    out = run(TestOperator(), WorkflowState(MATH, candidate="18"), backend=backend)
    assert out.passed is True and backend.calls == 1
    assert out.feedback.startswith("(no public tests for a math task; checked by the model)")


# --------------------------------------------------------------------- Review and Verify
def test_checkers_fail_without_a_candidate_and_without_a_call():
    backend = ScriptedBackend([])
    for op in (ReviewOperator(), VerifyOperator(), TestOperator()):
        out = run(op, WorkflowState(MATH), backend=backend)
        assert out.passed is False and "no candidate" in out.feedback
    assert backend.calls == 0


def test_review_unclear_verdict_counts_as_fail_and_verify_compares_answers():
    backend = ScriptedBackend(["Looks plausible I guess."])
    out = run(ReviewOperator(), WorkflowState(MATH, candidate="18"), backend=backend)
    assert out.passed is False and out.feedback.startswith("(no clear verdict)")
    backend = ScriptedBackend(["I get <answer>$18.00</answer>.", "I get <answer>20</answer>."])
    verify = VerifyOperator()
    assert run(verify, WorkflowState(MATH, candidate="18"), backend=backend).passed is True
    assert run(verify, WorkflowState(MATH, candidate="18"), backend=backend).passed is False


def test_revise_reads_candidate_and_feedback():
    backend = ScriptedBackend(["Corrected. <answer>18</answer>"])
    state = WorkflowState(MATH, candidate="16", feedback="you subtracted twice")
    out = run(ReviseOperator(), state, backend=backend)
    assert out.answer == "18"
    prompt = backend.seen[0][1]["content"]
    assert "you subtracted twice" in prompt and "16" in prompt


# ------------------------------------------------------------------------------ ensemble
def test_sc_ensemble_majority_needs_no_call_and_ties_ask_the_backend():
    backend = ScriptedBackend(["The most consistent is <choice>B</choice>"])
    state = WorkflowState(MATH, candidates=("$18", "20", "18.0"))
    out = run(ScEnsembleOperator(), state, backend=backend)
    assert out.answer == "$18" and backend.calls == 0
    tie = WorkflowState(MATH, candidates=("17", "18"))
    out = run(ScEnsembleOperator(), tie, backend=backend)
    assert out.answer == "18" and backend.calls == 1
    failing = ScriptedBackend([Completion.failure("HTTP 500")])
    out = run(ScEnsembleOperator(), tie, backend=failing)
    assert out.answer == "17" and out.error == "BackendError: HTTP 500"
    assert run(ScEnsembleOperator(), WorkflowState(MATH)).error.startswith("NoCandidates")


def test_aggregate_merges():
    backend = ScriptedBackend(["Both agree. <answer>18</answer>"])
    out = run(AggregateOperator(), WorkflowState(MATH, candidates=("18", "17")), backend=backend)
    assert out.answer == "18"
    assert "(A) 18" in backend.seen[0][1]["content"]


# -------------------------------------------------------------------------------- Format
def test_format_math_qa_and_code(humaneval):
    backend = ScriptedBackend(["The final answer is **$18.00**."])
    assert run(FormatOperator(), WorkflowState(MATH, candidate="x"), backend=backend).answer == (
        "18.00"
    )
    backend = ScriptedBackend(["<answer>William Shakespeare.</answer>\nHope this helps"])
    out = run(FormatOperator(), WorkflowState(QA, candidate="Shakespeare"), backend=backend)
    assert out.answer == "William Shakespeare"
    program = humaneval.question + humaneval.answer
    backend = ScriptedBackend(["Here is the body:\n```python\nreturn False\n```"])
    out = run(FormatOperator(), WorkflowState(humaneval, candidate=program), backend=backend)
    assert out.answer.startswith("from typing import List") and out.error is None
    failing = ScriptedBackend([Completion.failure("timeout")])
    out = run(FormatOperator(), WorkflowState(MATH, candidate="so it is 18"), backend=failing)
    assert out.answer == "18" and out.error == "BackendError: timeout"


# -------------------------------------------------------------------------------- registry
class Echo:
    async def run(self, state, prompt, llm):
        from flowsteer.operators.base import OperatorOutput

        return OperatorOutput(text=prompt, answer=prompt)


def test_registry_builds_builtins_and_honours_impl():
    library = OperatorLibrary.default()
    assert all(build_operator(spec) is not None for spec in library)
    echo = build_operator(OperatorSpec("Echo", "solving", "x", impl=f"{__name__}:Echo"))
    assert isinstance(echo, Echo)
    with pytest.raises(OperatorImplError, match="no implementation"):
        build_operator(OperatorSpec("Mystery", "solving", "x"))
    with pytest.raises(OperatorImplError, match="cannot import"):
        build_operator(OperatorSpec("Echo", "solving", "x", impl="no.such.module:Echo"))
    with pytest.raises(ValueError, match="programmer_retries"):
        OperatorSettings(programmer_retries=-1)


# ------------------------------------------------------------------- a code workflow, whole
def test_code_workflow_repairs_a_failing_program_and_passes_the_hidden_tests(humaneval):
    from flowsteer.canvas.executor import WorkflowExecutor
    from flowsteer.canvas.graph import WorkflowGraph
    from flowsteer.rewards.code_answer import CodeAnswerScorer

    wrong = "```python\ndef has_close_elements(numbers, threshold):\n    return True\n```"
    fixed = f"```python\n{humaneval.question}{humaneval.answer}```"
    backend = ScriptedBackend([wrong, fixed, "Here it is:\n" + fixed])
    g = WorkflowGraph()
    g.add_operator("Programmer")
    g.add_structure("conditional", ["Test", "Revise"])
    g.add_operator("Format")
    result = asyncio.run(WorkflowExecutor(backend).execute(g, humaneval))
    assert result.ok, result.errors
    assert [r.operator for r in result.trace] == ["Programmer", "Test", "Revise", "Format"]
    assert result.trace[1].passed is False and "(got True)" in result.trace[1].output
    assert "(got True)" in backend.seen[1][1]["content"]  # Revise saw the failing assertion
    assert CodeAnswerScorer()(humaneval, result.answer) == 1.0
    assert CodeAnswerScorer()(humaneval, wrong) == 0.0


def test_sc_ensemble_majority_wins_wherever_it_stands():
    backend = ScriptedBackend([])
    state = WorkflowState(MATH, candidates=("17", "18", "$18.00"))
    out = run(ScEnsembleOperator(), state, backend=backend)
    assert out.answer == "18" and backend.calls == 0
    assert out.text.startswith("majority 2/3")


def test_programmer_on_a_code_task_requires_the_entry_point():
    bare = Task("m/1", "mbpp", "code", "Write f returning 1.", "", entry_point="f")
    backend = ScriptedBackend(
        ["```python\ndef g():\n    return 1\n```", "```python\ndef f():\n    return 1\n```"]
    )
    out = run(ProgrammerOperator(), WorkflowState(bare), backend=backend)
    assert "NameError: the program does not define f()" in backend.seen[1][-1]["content"]
    assert out.error is None and out.answer.startswith("def f():")


def test_planners_never_replace_the_candidate():
    backend = ScriptedBackend(["<plan>1. redo it</plan>"])
    out = run(PlanOperator(), WorkflowState(MATH, candidate="18"), backend=backend)
    assert out.plan == "1. redo it" and out.answer is None


def test_upstream_material_is_cut_to_max_material_chars():
    backend = ScriptedBackend(["<answer>18</answer>"])
    op = ReviseOperator(OperatorSettings(max_material_chars=100))
    state = WorkflowState(MATH, candidate="9" * 1000, feedback="f" * 1000)
    run(op, state, backend=backend)
    prompt = backend.seen[0][1]["content"]
    assert "9" * 100 + "\n[... truncated]" in prompt and "9" * 101 not in prompt
    assert "f" * 100 + "\n[... truncated]" in prompt and "f" * 101 not in prompt
