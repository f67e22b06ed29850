"""Exact episodes: a scripted engine drives the real canvas through `RolloutRunner`, and every
token of the resulting trajectory is accounted for (masks, log-probs, template pieces)."""

from __future__ import annotations

import asyncio
import math

import pytest

from flowsteer.canvas import FinishConstraints
from flowsteer.rewards.workflow_reward import WorkflowReward
from flowsteer.rollout import RolloutRunner, SamplingParams
from flowsteer.rollout.chat import ChatFormat

THINK = "<think>\nStart with a plan.\n</think>\n\n"
SCRIPT = [
    THINK + "<action>add</action><operator>Programmer</operator>",
    "<action>set_prompt</action><prompt>Compute it in Python.</prompt>",
    "<action>finish</action>",
]


def run(runner, tasks, group_size=1, **kwargs):
    return asyncio.run(runner.run(tasks, group_size, **kwargs))


def segments(trajectory):
    """Runs of equal mask as (mask, ids, logprobs)."""
    out = []
    for tok, m, lp in zip(
        trajectory.token_ids, trajectory.loss_mask, trajectory.rollout_logprobs, strict=True
    ):
        if not out or out[-1][0] != m:
            out.append((m, [], []))
        out[-1][1].append(tok)
        out[-1][2].append(lp)
    return out


@pytest.mark.parametrize("enable_thinking", [None, False])
def test_masks_account_for_every_token(
    any_tokenizer, math_task, scripted_engine, answer_executor, enable_thinking
):
    engine = scripted_engine(any_tokenizer, SCRIPT)
    executor = answer_executor()
    runner = RolloutRunner(
        engine,
        any_tokenizer,
        executor,
        WorkflowReward(mode="answer_only"),
        enable_thinking=enable_thinking,
    )
    [traj] = run(runner, [math_task])
    chat = ChatFormat(any_tokenizer, enable_thinking=enable_thinking)
    sampled = [g for call in engine.outputs for g in call]
    assert [len(c) for c in engine.calls] == [1, 1, 1]
    # Every mask-1 token is a token the engine sampled, in order, with its log-prob.
    assert [t for t, m in zip(traj.token_ids, traj.loss_mask, strict=True) if m] == [
        t for g in sampled for t in g.token_ids
    ]
    assert [lp for lp, m in zip(traj.rollout_logprobs, traj.loss_mask, strict=True) if m] == [
        lp for g in sampled for lp in g.logprobs
    ]
    assert all(
        lp == 0.0 for lp, m in zip(traj.rollout_logprobs, traj.loss_mask, strict=True) if not m
    )
    # Mask-0 tokens are exactly the template's pieces: prompt, then one observation per turn.
    canvas = runner.episode(math_task).canvas
    parts = segments(traj)
    assert [m for m, _, _ in parts] == [0, 1, 0, 1, 0, 1]
    assert parts[0][1] == chat.prompt_ids(canvas.system_prompt(), canvas.reset())
    # The sampled end-of-turn id is part of each policy turn (mask 1).
    assert all(ids[-1] == chat.end_of_turn_id for m, ids, _ in parts if m == 1)
    assert traj.policy_tokens == sum(traj.loss_mask)
    # The whole sequence decodes to the conversation the canvas saw.
    texts = [any_tokenizer.decode(ids) for m, ids, _ in parts]
    assert [texts[i] for i in (1, 3, 5)] == [turn + "<|im_end|>" for turn in SCRIPT]
    generation_prompt = "<|im_start|>assistant\n"
    if enable_thinking is False:
        generation_prompt += "<think>\n\n</think>\n\n"
    assert texts[0].endswith(
        "<|im_start|>user\n" + canvas.reset() + "<|im_end|>\n" + generation_prompt
    )
    for i in (2, 4):
        assert texts[i].startswith("\n<|im_start|>user\n")
        assert texts[i].endswith("<|im_end|>\n" + generation_prompt)
    assert "Added n1 Programmer" in texts[2]
    # Flags and episode facts.
    assert traj.finished and not traj.truncated and not traj.context_truncated
    assert traj.turns == 3 and traj.invalid_actions == 0
    assert traj.dsl == "Programmer"
    assert traj.answer == "4" and traj.reward == 1.0
    assert traj.backend_calls == 2 * executor.runs and executor.runs >= 1
    assert traj.backend_tokens == 30 * executor.runs


def test_observation_text_is_what_the_canvas_answered(tiny_tokenizer, math_task, scripted_engine):
    engine = scripted_engine(tiny_tokenizer, SCRIPT)
    runner = RolloutRunner(engine, tiny_tokenizer, None, WorkflowReward())
    episode = runner.episode(math_task)
    asyncio.run(_play(episode, engine))
    chat = runner.chat
    # Rebuild the sequence from the texts the canvas saw and the ids the engine returned.
    expected = chat.prompt_ids(episode.canvas.system_prompt(), episode.observations[0])
    for k, call in enumerate(engine.outputs):
        expected += call[0].token_ids
        if k + 1 < len(episode.observations):
            expected += chat.observation_ids(episode.observations[k + 1])
    assert episode.token_ids == expected
    assert [episode.chat.decode_turn(c[0].token_ids) for c in engine.outputs] == SCRIPT
    # The whole sequence decodes to the conversation, as the template renders it.
    conversation = [{"role": "system", "content": episode.canvas.system_prompt()}]
    for k, observation in enumerate(episode.observations):
        conversation.append({"role": "user", "content": observation})
        conversation.append({"role": "assistant", "content": SCRIPT[k]})
    rendered = chat.render(conversation, add_generation_prompt=False)
    assert tiny_tokenizer.decode(episode.token_ids) + "\n" == rendered


async def _play(episode, engine):
    while not episode.done:
        [gen] = await engine.generate([episode.request(SamplingParams(), None)])
        await episode.play(gen)


def test_turn_cut_at_its_limit_gets_an_environment_end_of_turn(
    tiny_tokenizer, math_task, scripted_engine
):
    long_turn = "<action>add</action><operator>Programmer</operator>" + " the" * 40
    engine = scripted_engine(tiny_tokenizer, [long_turn, *SCRIPT[1:]])
    runner = RolloutRunner(
        engine, tiny_tokenizer, None, WorkflowReward(), sampling=SamplingParams(max_tokens=30)
    )
    [traj] = run(runner, [math_task])
    first = engine.outputs[0][0]
    assert first.finish_reason == "length" and len(first.token_ids) == 30
    eot = runner.chat.end_of_turn_id
    assert eot not in first.token_ids
    start = segments(traj)[0][1]
    at = len(start) + 30
    # The appended end-of-turn follows the cut turn with mask 0 and log-prob 0.
    assert traj.token_ids[at] == eot and traj.loss_mask[at] == 0
    assert traj.rollout_logprobs[at] == 0.0
    assert traj.policy_tokens == sum(len(g.token_ids) for c in engine.outputs for g in c)


def test_context_limit_truncates_with_aligned_masks(tiny_tokenizer, math_task, scripted_engine):
    probe = RolloutRunner(
        scripted_engine(tiny_tokenizer, SCRIPT), tiny_tokenizer, None, WorkflowReward()
    )
    prompt_len = len(probe.episode(math_task).token_ids)
    # Room for the first turn (cut by the context) but not for the observation after it.
    limit = prompt_len + 20
    engine = scripted_engine(tiny_tokenizer, SCRIPT)
    runner = RolloutRunner(
        engine,
        tiny_tokenizer,
        None,
        WorkflowReward(),
        max_context_tokens=limit,
        min_turn_tokens=8,
    )
    [traj] = run(runner, [math_task])
    assert traj.context_truncated and traj.truncated and not traj.finished
    assert len(traj.token_ids) <= limit
    assert traj.turns == 1 and len(engine.calls) == 1
    # The turn's budget was the context's room minus the slot for the end-of-turn.
    assert engine.calls[0][0].sampling.max_tokens == limit - prompt_len - 1
    assert len(traj.token_ids) == len(traj.loss_mask) == len(traj.rollout_logprobs)
    assert traj.token_ids[-1] == runner.chat.end_of_turn_id and traj.loss_mask[-1] == 0
    assert traj.loss_mask[:prompt_len] == [0] * prompt_len
    assert traj.loss_mask[prompt_len:-1] == [1] * (limit - prompt_len - 1)
    assert traj.reward_components["truncated"] == 1.0


def test_prompt_that_cannot_fit_ends_before_any_turn(tiny_tokenizer, math_task, scripted_engine):
    engine = scripted_engine(tiny_tokenizer, SCRIPT)
    runner = RolloutRunner(engine, tiny_tokenizer, None, WorkflowReward(), max_context_tokens=50)
    [traj] = run(runner, [math_task])
    assert traj.context_truncated and traj.turns == 0 and engine.calls == []
    assert sum(traj.loss_mask) == 0


def test_max_turns_truncates(tiny_tokenizer, math_task, scripted_engine):
    engine = scripted_engine(tiny_tokenizer, lambda r, c, i: "<action>bogus</action>")
    runner = RolloutRunner(engine, tiny_tokenizer, None, WorkflowReward(), max_turns=3)
    [traj] = run(runner, [math_task])
    assert traj.turns == 3 and traj.invalid_actions == 3
    assert traj.truncated and not traj.context_truncated and not traj.finished
    assert segments(traj)[-1][0] == 1  # no observation after the last turn


def test_rejected_finish_continues(tiny_tokenizer, math_task, scripted_engine):
    script = ["<action>finish</action>", *SCRIPT]
    engine = scripted_engine(tiny_tokenizer, script)
    runner = RolloutRunner(
        engine,
        tiny_tokenizer,
        None,
        WorkflowReward(),
        finish_constraints=FinishConstraints(min_operators=1),
    )
    [traj] = run(runner, [math_task])
    assert traj.finished and traj.turns == 4 and traj.invalid_actions == 1


def test_engine_abort_marks_the_episode_failed_and_unscored(
    tiny_tokenizer, math_task, scripted_engine
):
    engine = scripted_engine(tiny_tokenizer, lambda r, c, i: SCRIPT[c], abort=[(1, 0)])
    runner = RolloutRunner(engine, tiny_tokenizer, None, WorkflowReward())
    first, second = run(runner, [math_task], group_size=2)
    assert first.error is not None and "scripted abort" in first.error
    assert math.isnan(first.reward) and not first.finished and not first.truncated
    assert first.turns == 1  # the turn before the abort is kept, nothing after it
    assert second.error is None and second.finished


def test_engine_exception_fails_its_episodes_not_the_run(tiny_tokenizer, math_task):
    class Broken:
        weights_version = 0

        async def generate(self, requests):
            raise RuntimeError("device lost")

        async def sync_weights(self, policy, version):
            pass

    runner = RolloutRunner(Broken(), tiny_tokenizer, None, WorkflowReward())
    trajs = run(runner, [math_task], group_size=2)
    assert all("device lost" in t.error for t in trajs)
    assert all(math.isnan(t.reward) for t in trajs)
