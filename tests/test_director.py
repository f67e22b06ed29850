"""FlowDirector: a chat policy playing whole episodes on the canvas."""

from __future__ import annotations

import asyncio

from flowsteer.canvas import FinishConstraints
from flowsteer.canvas.executor import WorkflowExecutor
from flowsteer.director import FlowDirector
from flowsteer.llm.backend import Completion
from flowsteer.llm.scripted import ScriptedBackend
from flowsteer.quickstart import reference_actions
from flowsteer.tasks import Task

TASK = Task("t/0", "gsm8k", "math", "Tom has 3 apples and buys 4 more. How many?", "7")
REFERENCE_DSL = "Plan -> [Programmer, Custom] -> ScEnsemble -> Verify ? Revise : done -> Format"


def test_reference_episode_builds_the_workflow_and_finishes():
    policy = ScriptedBackend(reference_actions())
    episode = asyncio.run(FlowDirector(policy).run(TASK))
    assert episode.finished and not episode.truncated and episode.error is None
    assert episode.graph.to_dsl() == REFERENCE_DSL
    assert len(episode.turns) == len(reference_actions()) == episode.valid_actions
    assert episode.answer is None  # no executor: edits are checked, nothing runs


def test_policy_sees_the_growing_conversation():
    policy = ScriptedBackend([*reference_actions()[:2], "<action>finish</action>"])
    asyncio.run(FlowDirector(policy, max_turns=10, temperature=0.5, max_tokens=32).run(TASK))
    first, last = policy.seen[0], policy.seen[-1]
    assert [m["role"] for m in first] == ["system", "user"]
    assert "Plan [planning]" in first[0]["content"] and TASK.question in first[1]["content"]
    assert [m["role"] for m in last[2:]] == ["assistant", "user"] * 2
    assert len(policy.seen) == 3
    assert last[2]["content"] == reference_actions()[0]
    assert policy.sampling_seen[0] == {"temperature": 0.5, "max_tokens": 32}


def test_invalid_actions_until_the_turn_limit_truncate():
    policy = ScriptedBackend(["I am not sure."], when_exhausted="repeat_last")
    episode = asyncio.run(FlowDirector(policy, max_turns=3).run(TASK))
    assert episode.truncated and not episode.finished
    assert len(episode.turns) == 3 and episode.valid_actions == 0
    assert all(not t.info.valid and t.info.error for t in episode.turns)


def test_policy_failure_ends_the_episode_with_the_reason():
    policy = ScriptedBackend([reference_actions()[0], Completion.failure("HTTP 503")])
    episode = asyncio.run(FlowDirector(policy).run(TASK))
    assert not episode.finished
    assert episode.error == "policy failed at turn 2: HTTP 503"
    assert len(episode.turns) == 1


def test_with_an_executor_the_final_answer_comes_from_the_last_run():
    def backend_reply(messages):
        return "The answer is 7. <answer>7</answer> PASS"

    executor = WorkflowExecutor(ScriptedBackend(backend_reply))
    constraints = FinishConstraints(min_operators=6, require_checker=True, require_format=True)
    director = FlowDirector(
        ScriptedBackend(reference_actions()), executor, finish_constraints=constraints
    )
    episode = asyncio.run(director.run(TASK))
    assert episode.finished
    assert episode.answer is not None and "7" in episode.answer


def test_seed_gives_each_turn_its_own_reproducible_seed():
    policy = ScriptedBackend(["no action"], when_exhausted="repeat_last")
    asyncio.run(FlowDirector(policy, max_turns=3, seed=10).run(TASK))
    assert [s["seed"] for s in policy.sampling_seen] == [10, 11, 12]


def test_an_unreachable_policy_is_visible_not_silent(caplog):
    import pytest

    from flowsteer.director import EpisodeError

    policy = ScriptedBackend([Completion.failure("connection error: ConnectionRefusedError")])
    with caplog.at_level("WARNING", logger="flowsteer.director"):
        episode = asyncio.run(FlowDirector(policy).run(TASK))
    assert "policy failed at turn 1: connection error" in caplog.text
    with pytest.raises(EpisodeError, match="stopped: policy failed at turn 1: connection error"):
        episode.raise_for_error()
    ok = asyncio.run(FlowDirector(ScriptedBackend(reference_actions())).run(TASK))
    assert ok.raise_for_error() is ok
