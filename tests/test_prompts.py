"""What the policy reads is generated: from the library, the canvas settings and the task."""

from __future__ import annotations

from flowsteer.canvas import Canvas, FinishConstraints
from flowsteer.operators import OperatorLibrary
from flowsteer.operators.spec import OperatorSpec
from flowsteer.prompts import system_prompt, user_prompt
from flowsteer.tasks import Task

TASK = Task("qa/0", "hotpotqa", "qa", "  Who wrote it?  ", "Ann", context="  Ann wrote it.  ")


def test_system_prompt_lists_exactly_the_library_it_is_given():
    lib = (
        OperatorLibrary.default()
        .restrict(["Plan", "Custom", "Verify", "Format"])
        .extend(OperatorSpec("Lookup", "solving", "Looks the answer up in a table."))
    )
    sp = Canvas(TASK, library=lib).system_prompt()
    assert lib.describe() in sp
    assert "- Lookup [solving]: Looks the answer up in a table." in sp
    assert "Programmer" not in sp.split("Actions (")[0]  # d_lib holds only the kept operators


def test_system_prompt_states_the_turn_budget_and_finish_constraints():
    fc = FinishConstraints(min_operators=3, require_checker=True, require_format=True)
    sp = Canvas(TASK, max_turns=7, finish_constraints=fc).system_prompt()
    assert "You have 7 turns" in sp
    assert (
        "finish is accepted when the workflow has at least 3 operator(s), a checker, Format." in sp
    )
    assert "finish is accepted" not in system_prompt(OperatorLibrary.default())


def test_first_user_turn_has_the_task_context_and_turn_budget():
    obs = Canvas(TASK, max_turns=7).reset()
    assert obs.splitlines() == [
        "Task (qa):",
        "Who wrote it?",
        "Context:",
        "Ann wrote it.",
        "The canvas is empty. Build the workflow, one action per turn (turn 0/7).",
    ]
    assert "Context:" not in user_prompt(Task("m/0", "gsm8k", "math", "1+1?", "2"))
