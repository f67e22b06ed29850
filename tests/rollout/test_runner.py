"""`RolloutRunner` with the real `HFEngine` on the tiny policy: lockstep batching, ordering and
group ids, reproducibility with a seed, and the callback."""

from __future__ import annotations

import asyncio

import pytest
from transformers import AutoModelForCausalLM, AutoTokenizer

from flowsteer.rewards.workflow_reward import WorkflowReward
from flowsteer.rollout import HFEngine, RolloutRunner, SamplingParams, request_seed
from flowsteer.tasks import Task

TASKS = [
    Task("toy/0", "toy", "math", "What is 2 + 2?", "4"),
    Task("toy/1", "toy", "math", "What is 3 + 3?", "6"),
]


@pytest.fixture(scope="module")
def policy(tiny_dir):
    return AutoModelForCausalLM.from_pretrained(tiny_dir), AutoTokenizer.from_pretrained(tiny_dir)


def runner_for(engine, tokenizer, **kwargs):
    options = dict(max_turns=3, sampling=SamplingParams(max_tokens=12), min_turn_tokens=4)
    options.update(kwargs)
    return RolloutRunner(engine, tokenizer, None, WorkflowReward(), **options)


def test_one_generate_call_per_turn_for_all_active_episodes(policy, recording_engine):
    model, tok = policy
    engine = recording_engine(HFEngine(model, tok))
    done = []
    trajs = asyncio.run(runner_for(engine, tok).run(TASKS, 3, seed=0, on_episode_done=done.append))
    # The untrained policy never finishes: all 6 episodes play 3 turns, in 3 calls of 6.
    assert engine.batch_sizes == [6, 6, 6]
    assert [t.group_id for t in trajs] == [0, 0, 0, 1, 1, 1]
    assert [t.task_id for t in trajs] == ["toy/0"] * 3 + ["toy/1"] * 3
    assert sorted(id(t) for t in done) == sorted(id(t) for t in trajs)
    assert all(t.turns == 3 and t.truncated and t.error is None for t in trajs)
    # Each turn is cut at 12 tokens unless it sampled the end-of-turn id first.
    assert all(
        len(g.token_ids) == 12 if g.finish_reason == "length" else g.finish_reason == "stop"
        for g in engine.generations
    )
    assert sum(t.policy_tokens for t in trajs) == sum(len(g.token_ids) for g in engine.generations)


def test_batch_shrinks_when_an_episode_finishes(tiny_tokenizer, math_task, scripted_engine):
    plan = [
        "<action>add</action><operator>Custom</operator>",
        "<action>set_prompt</action><prompt></prompt>",
        "<action>finish</action>",
    ]

    def script(request, call, row):
        # Row 0 builds a workflow and finishes in 3 turns; the other only plays invalid actions.
        return plan[call] if row == 0 and call < len(plan) else "<action>bogus</action>"

    engine = scripted_engine(tiny_tokenizer, script)
    runner = RolloutRunner(engine, tiny_tokenizer, None, WorkflowReward(), max_turns=5)
    first, second = asyncio.run(runner.run([math_task], 2))
    assert [len(c) for c in engine.calls] == [2, 2, 2, 1, 1]
    assert first.finished and first.turns == 3
    assert second.truncated and second.turns == 5


def test_a_seeded_run_is_reproducible(policy):
    model, tok = policy
    runs = [
        asyncio.run(runner_for(HFEngine(model, tok), tok).run(TASKS[:1], 2, seed=s))
        for s in (5, 5, 6)
    ]
    ids = [[t.token_ids for t in run] for run in runs]
    assert ids[0] == ids[1]
    assert ids[0] != ids[2]
    assert ids[0][0] != ids[0][1]  # the two samples of a group differ
    assert [t.rollout_logprobs for t in runs[0]] == [t.rollout_logprobs for t in runs[1]]


def test_request_seeds_are_distinct_and_stable():
    seeds = {request_seed(0, i, t) for i in range(20) for t in range(20)}
    assert len(seeds) == 400
    assert request_seed(3, 1, 2) == request_seed(3, 1, 2) < 2**31


def test_weights_version_is_stamped(tiny_tokenizer, math_task, scripted_engine):
    engine = scripted_engine(tiny_tokenizer, lambda r, c, i: "<action>bogus</action>")
    asyncio.run(engine.sync_weights(None, 7))
    runner = RolloutRunner(engine, tiny_tokenizer, None, WorkflowReward(), max_turns=1)
    [traj] = asyncio.run(runner.run([math_task], 1))
    assert traj.weights_version == 7


def test_bad_group_size_is_refused(tiny_tokenizer, scripted_engine):
    runner = RolloutRunner(
        scripted_engine(tiny_tokenizer, []), tiny_tokenizer, None, WorkflowReward()
    )
    with pytest.raises(ValueError, match="group_size"):
        asyncio.run(runner.run(TASKS, 0))


def test_rdiv_reads_the_runners_plug_in_library(tiny_tokenizer, math_task, scripted_engine):
    """A plug-in checker (verification category) earns R_div's checker part in a rollout: the
    reward is given the canvas's library, not the default one (which does not know SqlCheck)."""
    from flowsteer.operators import OperatorLibrary, OperatorSpec

    library = OperatorLibrary.default().extend(
        OperatorSpec("SqlCheck", "verification", "Runs the query and checks it.")
    )
    plan = [
        "<action>add</action><operator>SqlCheck</operator>",
        "<action>set_prompt</action><prompt></prompt>",
        "<action>finish</action>",
    ]
    engine = scripted_engine(tiny_tokenizer, lambda request, call, row: plan[min(call, 2)])
    runner = RolloutRunner(
        engine, tiny_tokenizer, None, WorkflowReward(), library=library, max_turns=4
    )
    (trajectory,) = asyncio.run(runner.run([math_task], 1))
    assert trajectory.error is None, trajectory.error
    assert trajectory.dsl == "SqlCheck"
    assert trajectory.reward_components["div/checker"] > 0
