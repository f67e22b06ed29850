"""Learning: the tiny policy sampled by `HFEngine` and updated by `cwrpo_loss` on a bandit-like
text task raises its reward. No canvas here: a small loop over the same engine, advantages,
collation and loss the trainer uses.

Task: after a fixed chat prompt, sample 4 tokens; the reward is the share of them that are in a
fixed target set (64 of the ~870 ids, so a random policy scores about 0.07).
"""

from __future__ import annotations

import asyncio

import pytest
import torch

from flowsteer.rl.advantages import compute_advantages
from flowsteer.rl.losses import cwrpo_loss
from flowsteer.rl.policy import Policy
from flowsteer.rollout import GenerationRequest, HFEngine, SamplingParams, Trajectory, collate

pytestmark = pytest.mark.slow
LR = 1e-2

GROUP, STEPS, UPDATES, NEW_TOKENS = 16, 30, 4, 4


def test_cwrpo_raises_the_reward_of_a_bandit_task(tiny_dir):
    torch.manual_seed(0)
    policy = Policy(str(tiny_dir))
    tok = policy.tokenizer
    engine = HFEngine(policy.model, tok)
    target = set(range(300, 364))
    prompt = tok.apply_chat_template(
        [{"role": "user", "content": "Say a word."}], tokenize=False, add_generation_prompt=True
    )
    prompt_ids = tok.encode(prompt, add_special_tokens=False)
    optimizer = torch.optim.AdamW(policy.model.parameters(), lr=LR, weight_decay=0.0)
    means = []
    for step in range(STEPS):
        sampling = [
            SamplingParams(max_tokens=NEW_TOKENS, seed=step * GROUP + i) for i in range(GROUP)
        ]
        generations = asyncio.run(
            engine.generate([GenerationRequest(prompt_ids, s) for s in sampling])
        )
        trajectories = []
        for g in generations:
            reward = sum(t in target for t in g.token_ids) / NEW_TOKENS
            trajectories.append(
                Trajectory(
                    prompt_ids + g.token_ids,
                    [0] * len(prompt_ids) + [1] * len(g.token_ids),
                    [0.0] * len(prompt_ids) + g.logprobs,
                    reward,
                )
            )
        means.append(sum(t.reward for t in trajectories) / GROUP)
        rewards = torch.tensor([t.reward for t in trajectories])
        advantages = compute_advantages(rewards, torch.zeros(GROUP, dtype=torch.long))
        batch = collate(trajectories, advantages.values, tok.pad_token_id)
        # On-policy: π_old is the engine's (raw, temperature-1) log-probs, which equal the
        # trainer's recomputation, so the first ratio is exactly 1.
        out = policy.token_logprobs(batch.input_ids, batch.attention_mask)
        loss = cwrpo_loss(out.logprobs, batch.rollout_logprobs, batch.advantages, batch.loss_mask)
        assert loss.stats.ratio_mean.item() == pytest.approx(1.0, abs=1e-4)
        optimizer.zero_grad()
        loss.loss.backward()
        optimizer.step()
    start, end = sum(means[:5]) / 5, sum(means[-5:]) / 5
    assert start < 0.2
    print("mean reward per step:", [round(m, 3) for m in means])
    assert end > start + 0.4, means
