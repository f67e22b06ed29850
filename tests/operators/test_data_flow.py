"""The data-flow table of `flowsteer.operators.base`, one test per row, through the executor.

A recording script answers per operator and keeps every prompt each operator was sent, so a
test can say what an operator saw and what the workflow answered.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest

from flowsteer.canvas.executor import WorkflowExecutor
from flowsteer.canvas.graph import WorkflowGraph
from flowsteer.llm.scripted import ScriptedBackend
from flowsteer.operators.base import OperatorOutput, WorkflowState
from flowsteer.tasks.task import Task

TASK = Task("gsm8k/test/0", "gsm8k", "math", "How much is 9 times 2?", "18")
FEEDBACK = "step 2 multiplies by 3 instead of 2"


class Recorder:
    """Replies per operator (a string, or a function of that operator's call number)."""

    def __init__(self, replies: dict[str, str | Callable[[int], str]]) -> None:
        self.replies = replies
        self.prompts: dict[str, list[str]] = {}

    def __call__(self, messages) -> str:
        name = messages[0]["content"].split("You are the ", 1)[1].split(" operator", 1)[0]
        seen = self.prompts.setdefault(name, [])
        seen.append(messages[1]["content"])
        reply = self.replies[name]
        return reply(len(seen) - 1) if callable(reply) else reply


def run(graph: WorkflowGraph, replies: dict[str, str | Callable[[int], str]]):
    recorder = Recorder(replies)
    result = asyncio.run(WorkflowExecutor(ScriptedBackend(recorder)).execute(graph, TASK))
    assert result.ok, result.errors
    return result, recorder.prompts


def fail(_: int) -> str:
    return f"<verdict>FAIL</verdict> {FEEDBACK}"


def test_row_planners_see_the_plan_but_no_answer_or_feedback():
    g = WorkflowGraph()
    g.add_operator("Decompose")
    g.add_operator("Custom")
    g.add_operator("Review")
    g.add_operator("Plan")
    result, prompts = run(
        g,
        {
            "Decompose": "<subproblems>1. what is 9*2?</subproblems>",
            "Custom": "<answer>17</answer>",
            "Review": fail,
            "Plan": "<plan>1. multiply</plan>",
        },
    )
    (plan_prompt,) = prompts["Plan"]
    assert "1. what is 9*2?" in plan_prompt  # the earlier plan
    assert "17" not in plan_prompt and FEEDBACK not in plan_prompt
    assert result.answer == "17"  # a planner never touches the candidate


@pytest.mark.parametrize("solver", ["Custom", "AnswerGenerate"])
def test_row_a_solver_in_a_loop_sees_the_previous_candidate_and_its_feedback(solver):
    g = WorkflowGraph()
    g.add_structure("loop", [solver, "Verify"], count=3)
    result, prompts = run(g, {solver: lambda n: f"<answer>{16 + n}</answer>", "Verify": fail})
    first, second, third = prompts[solver]
    assert "Candidate answer" not in first and FEEDBACK not in first
    assert "## Candidate answer\n16" in second and FEEDBACK in second
    assert "## Candidate answer\n17" in third and FEEDBACK in third
    assert len({first, second, third}) == 3  # no byte-identical retries
    assert result.answer == "18"


def test_row_programmer_sees_the_candidate_and_feedback():
    g = WorkflowGraph()
    g.add_operator("Custom")
    g.add_operator("Review")
    g.add_operator("Programmer")
    program = "```python\ndef solve():\n    return 9 * 2\n```"
    result, prompts = run(
        g, {"Custom": "<answer>27</answer>", "Review": fail, "Programmer": program}
    )
    (prompt,) = prompts["Programmer"]
    assert "## Candidate answer\n27" in prompt and FEEDBACK in prompt and "(failed)" in prompt
    assert result.answer == "18"


def test_row_a_non_ensemble_node_after_a_parallel_sees_the_whole_list():
    g = WorkflowGraph()
    g.add_structure("parallel", ["Custom", "AnswerGenerate", "Custom"])
    g.add_operator("Revise")
    answers = {"Custom": lambda n: f"<answer>{17 + 2 * n}</answer>"}
    result, prompts = run(g, {**answers, "AnswerGenerate": "<answer>18</answer>", "Revise": "18"})
    (prompt,) = prompts["Revise"]
    assert "## Candidates (from a parallel block)\n(A) 17\n(B) 18\n(C) 19" in prompt
    assert result.answer == "18"


def test_row_a_checker_checks_the_current_candidate_and_changes_no_answer():
    g = WorkflowGraph()
    g.add_structure("parallel", ["Custom", "AnswerGenerate"])
    g.add_operator("Verify")
    replies = {"Custom": "<answer>17</answer>", "AnswerGenerate": "<answer>19</answer>"}
    result, prompts = run(g, {**replies, "Verify": "<answer>18</answer> <verdict>FAIL</verdict>"})
    (prompt,) = prompts["Verify"]
    assert "## Candidate answer\n17" in prompt and "19" not in prompt
    assert result.answer == "17"  # the checker's own answer is not the workflow's


@pytest.mark.parametrize(("verdict", "answer"), [("FAIL", "20"), ("PASS", "17")])
def test_row_revise_after_a_parallel_is_not_outvoted_by_the_stale_list(verdict, answer):
    # [A, B, C] -> Verify ? Revise : done -> ScEnsemble
    g = WorkflowGraph()
    g.add_structure("parallel", ["Custom", "Custom", "AnswerGenerate"])
    g.add_structure("conditional", ["Verify", "Revise"])
    g.add_operator("ScEnsemble")
    replies = {
        "Custom": "<answer>17</answer>",
        "AnswerGenerate": "<answer>19</answer>",
        "Verify": f"<verdict>{verdict}</verdict> {FEEDBACK}",
        "Revise": "<answer>20</answer>",
        "ScEnsemble": "<choice>A</choice>",
    }
    result, prompts = run(g, replies)
    assert result.answer == answer  # FAIL: the revision survives; PASS: 17 wins the 2-1 vote
    if verdict == "FAIL":
        (revise,) = prompts["Revise"]
        assert "## Candidate answer\n17" in revise and FEEDBACK in revise
        assert "(A) 17\n(B) 17\n(C) 19" in revise
        assert result.trace[-1].output == "20"  # ScEnsemble passed the single answer through


def test_row_an_ensemble_consumes_the_list_into_one_candidate():
    g = WorkflowGraph()
    g.add_structure("parallel", ["Custom", "AnswerGenerate"])
    g.add_operator("Aggregate")
    g.add_operator("Revise")
    replies = {"Custom": "<answer>17</answer>", "AnswerGenerate": "<answer>19</answer>"}
    result, prompts = run(g, {**replies, "Aggregate": "<answer>18</answer>", "Revise": "18"})
    assert "(A) 17\n(B) 19" in prompts["Aggregate"][0]
    assert "Candidates" not in prompts["Revise"][0]  # the list was consumed
    assert "## Candidate answer\n18" in prompts["Revise"][0]
    assert result.answer == "18"


def test_row_format_sees_only_the_current_candidate():
    g = WorkflowGraph()
    g.add_operator("Plan")
    g.add_operator("Custom")
    g.add_operator("Review")
    g.add_operator("Format")
    replies = {"Plan": "<plan>1. multiply</plan>", "Custom": "so 18 <answer>18</answer>"}
    result, prompts = run(g, {**replies, "Review": fail, "Format": "<answer>18</answer>"})
    (prompt,) = prompts["Format"]
    assert "## Candidate answer\n18" in prompt
    assert "1. multiply" not in prompt and FEEDBACK not in prompt
    assert result.answer == "18"


def test_a_new_candidate_clears_feedback_that_was_about_the_old_one():
    g = WorkflowGraph()
    g.add_operator("Custom")
    g.add_operator("Review")
    g.add_operator("Revise")
    g.add_operator("Custom")
    replies = {"Custom": lambda n: f"<answer>{17 + n}</answer>", "Review": fail}
    result, prompts = run(g, {**replies, "Revise": "<answer>18</answer>"})
    assert FEEDBACK in prompts["Revise"][0]
    assert FEEDBACK not in prompts["Custom"][1]
    assert "## Candidate answer\n18" in prompts["Custom"][1]
    assert result.answer == "18" and result.trace[-1].operator == "Custom"


def test_apply_and_after_parallel_are_the_documented_fold():
    state = WorkflowState(TASK, candidate="17", candidates=("17", "19"), feedback="x", passed=False)
    assert state.apply(OperatorOutput(plan="p")).candidates == ("17", "19")
    after = state.apply(OperatorOutput(answer="18"))
    assert (after.candidate, after.candidates, after.feedback, after.passed) == ("18", (), "", None)
    checked = after.apply(OperatorOutput(passed=True, feedback="ok"))
    assert (checked.candidate, checked.passed, checked.feedback) == ("18", True, "ok")
    fanned = checked.after_parallel([OperatorOutput(answer="1"), OperatorOutput(error="e")])
    assert (fanned.candidate, fanned.candidates) == ("1", ("1",))
    assert fanned.after_parallel([OperatorOutput(error="e")]) == fanned  # no answers: unchanged


@pytest.mark.parametrize("children", [["Custom", "Verify"], ["Verify", "Custom"]])
def test_a_checker_in_a_parallel_does_not_judge_the_answer_the_block_wrote(children):
    # Verify judged the input candidate (17); the block's new candidate (18) was never checked
    g = WorkflowGraph()
    g.add_operator("Custom")
    g.add_structure("parallel", children)
    g.add_operator("Revise")
    replies = {"Custom": lambda n: f"<answer>{17 + n}</answer>", "Verify": fail}
    result, prompts = run(g, {**replies, "Revise": "<answer>18</answer>"})
    assert "## Candidate answer\n17" in prompts["Verify"][0]
    (revise,) = prompts["Revise"]
    assert "## Candidate answer\n18" in revise and FEEDBACK not in revise
    assert result.answer == "18"
