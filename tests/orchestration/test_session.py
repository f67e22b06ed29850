"""`OrchestrationSession`: instructions reach the policy, typed actions, undo, finish, continue."""

from __future__ import annotations

import asyncio

import pytest

from flowsteer.canvas import Canvas
from flowsteer.canvas.executor import WorkflowExecutor
from flowsteer.llm.scripted import ScriptedBackend
from flowsteer.orchestration.session import INSTRUCTION_PREFIX, OrchestrationSession
from flowsteer.tasks import Task

ADD_PLAN = "<action>add</action><operator>Plan</operator>"
ADD_CUSTOM = "<action>add</action><operator>Custom</operator>"
FINISH = "<action>finish</action>"


def session(script) -> OrchestrationSession:
    task = Task("toy/0", "toy", "math", "What is 6 * 7?", "42")
    backend = ScriptedBackend(["The answer is \\boxed{42}"], when_exhausted="cycle")
    canvas = Canvas(task, executor=WorkflowExecutor(backend=backend))
    policy = ScriptedBackend(script, when_exhausted="repeat_last" if script else "error")
    return OrchestrationSession(policy, canvas)


def test_instruction_reaches_the_policy_next_context():
    s = session([ADD_PLAN, "plan it", FINISH])
    asyncio.run(s.policy_turn())
    event = asyncio.run(s.handle("use two Programmers in parallel"))
    assert event.kind == "policy"
    received = s.policy.seen[-1]
    assert received[-1] == {
        "role": "user",
        "content": INSTRUCTION_PREFIX + "use two Programmers in parallel",
    }


def test_typed_action_is_applied_and_bad_input_goes_on():
    s = session([FINISH])
    event = asyncio.run(s.handle(ADD_CUSTOM))
    assert event.kind == "typed" and event.accepted
    assert s.canvas.awaiting is not None
    asyncio.run(s.handle("/do compute six times seven"))  # the awaited prompt
    assert s.canvas.graph.to_dsl() == "Custom"
    assert s.answer == "42"
    bad = asyncio.run(s.handle("<action>add</action><operator>Wizard</operator>"))
    assert bad.kind == "typed" and bad.accepted is False and "Wizard" in bad.observation
    assert asyncio.run(s.handle("/frobnicate")).kind == "error"
    assert s.instruct("").kind == "error"
    assert s.policy.calls == 0, "typed actions never call the policy"


def test_undo_restores_the_exact_canvas_and_conversation():
    s = session([])
    asyncio.run(s.typed(ADD_CUSTOM))
    asyncio.run(s.typed("compute six times seven"))
    before = s.canvas.snapshot().values
    messages = list(s.messages)
    asyncio.run(s.typed(ADD_PLAN))
    asyncio.run(s.typed("plan it"))
    assert s.canvas.graph.to_dsl() == "Custom -> Plan"
    assert s.undo().kind == "undo" and s.undo().kind == "undo"
    after = s.canvas.snapshot().values
    assert after.keys() == before.keys()
    for key in before:
        assert after[key] is before[key] or after[key] == before[key], key
    assert s.canvas.last_result is before["last_result"]
    assert s.canvas.graph.to_dsl() == "Custom" and s.messages == messages
    assert s.canvas.turn == 2


def test_finish_now_and_continue():
    s = session([ADD_CUSTOM, "compute six times seven", FINISH])
    asyncio.run(s.handle("/continue"))
    assert s.done and s.canvas.done and s.answer == "42"
    assert [e.kind for e in s.events] == ["policy"] * 3
    s2 = session([ADD_CUSTOM, "compute", ADD_PLAN])
    asyncio.run(s2.run_policy(max_steps=2))
    event = asyncio.run(s2.handle("/finish"))
    assert s2.done and event.kind == "finish" and "42" in event.text


def test_a_policy_that_stops_answering_is_an_error_event():
    s = session([])
    s.policy = ScriptedBackend([], when_exhausted="error")
    event = asyncio.run(s.policy_turn())
    assert event.kind == "error" and not s.done and s.canvas.turn == 0


@pytest.mark.parametrize("line", ["\x01bad", "x" * 3000])
def test_malformed_instruction(line):
    s = session([FINISH])
    assert asyncio.run(s.handle(line)).kind == "error"
    assert s.policy.calls == 0
