"""One full RL iteration on CPU, every part real: the tiny policy sampled by `HFEngine` plays
episodes on the canvas, whose workflows run on the `WorkflowExecutor` against the loopback
OpenAI-compatible server; the episodes are scored, turned into advantages, collated, and one
CWRPO step changes the policy.

An untrained tiny policy never writes a valid action, so every episode would score the same and
the update would be zero. A short supervised warm start teaches it one complete workflow
(add Custom, keep its prompt, finish) on a one-operator library; the backend then answers right
or wrong in turn, which gives the group its reward spread.
"""

from __future__ import annotations

import asyncio
import itertools

import pytest
import torch

from flowsteer.canvas import Canvas
from flowsteer.canvas.executor import WorkflowExecutor
from flowsteer.llm.loopback_server import LoopbackServer
from flowsteer.llm.openai_backend import OpenAIBackend
from flowsteer.operators import OperatorLibrary
from flowsteer.rewards.structure import StructureReward
from flowsteer.rewards.workflow_reward import WorkflowReward
from flowsteer.rl.advantages import compute_advantages
from flowsteer.rl.losses import cwrpo_loss
from flowsteer.rl.policy import Policy
from flowsteer.rollout import HFEngine, RolloutRunner, SamplingParams, collate
from flowsteer.rollout.chat import ChatFormat
from flowsteer.tasks import Task

pytestmark = pytest.mark.slow

TASK = Task("toy/0", "toy", "math", "What is 2 + 2?", "4")
WORKFLOW = [
    "<action>add</action><operator>Custom</operator>",
    "<action>set_prompt</action><prompt></prompt>",
    "<action>finish</action>",
]
MAX_TURNS = 4
TEMPERATURE = 0.3


def warm_start(policy: Policy, library: OperatorLibrary, steps: int = 300) -> None:
    """Teacher-force WORKFLOW's turns after their real contexts. The context is encoded once per
    step without gradient (its cache is recomputed with the current weights), and only the
    turn's own tokens are trained: cheap, and enough for the policy to follow the workflow."""
    model, chat = policy.model, ChatFormat(policy.tokenizer)
    canvas = Canvas(TASK, library=library, max_turns=MAX_TURNS)
    context = chat.prompt_ids(canvas.system_prompt(), canvas.reset())
    pairs = []
    for text in WORKFLOW:
        turn = [*chat.encode(text), chat.end_of_turn_id]
        pairs.append((context, turn))
        observation = asyncio.run(canvas.step(text)).observation
        context = context + turn + chat.observation_ids(observation)
    torch.manual_seed(0)
    optimizer = torch.optim.AdamW(model.parameters(), lr=8e-3)
    model.train()
    for _ in range(steps):
        worst = 0.0
        for context, turn in pairs:
            with torch.no_grad():
                cache = model(torch.tensor([context[:-1]]), use_cache=True).past_key_values
            logits = model(torch.tensor([context[-1:] + turn[:-1]]), past_key_values=cache).logits
            loss = torch.nn.functional.cross_entropy(logits[0].float(), torch.tensor(turn))
            loss.backward()
            worst = max(worst, loss.item())
        optimizer.step()
        optimizer.zero_grad()
        if worst < 0.01:  # every turn is near-certain: sampling reproduces the workflow
            break
    assert worst < 0.05, f"the warm start did not learn the workflow (worst turn loss {worst:.3f})"


def test_one_full_iteration_changes_the_policy(tiny_dir):
    policy = Policy(str(tiny_dir))
    tok = policy.tokenizer
    library = OperatorLibrary.default().restrict(["Custom"], [])
    warm_start(policy, library)

    answers = itertools.cycle(["<answer>4</answer>", "<answer>5</answer>"])
    with LoopbackServer(replies=lambda request: next(answers)) as server:
        backend = OpenAIBackend(
            model="loopback", base_url=server.base_url, api_key_env=None, max_retries=0
        )
        executor = WorkflowExecutor(backend, library=library, cache=False)
        runner = RolloutRunner(
            HFEngine(policy.model, tok),
            tok,
            executor,
            # Ungated with k = 1: the one-operator workflow earns R_div = 0.2, and R_ans
            # decides the rest.
            WorkflowReward(structure=StructureReward(min_operators=1), mode="ungated"),
            library=library,
            max_turns=MAX_TURNS,
            sampling=SamplingParams(max_tokens=24, temperature=TEMPERATURE),
        )
        trajectories = asyncio.run(runner.run([TASK], 4, seed=0))
        backend_requests = len(server.chat_requests)

    assert all(t.error is None for t in trajectories)
    assert sum(t.backend_calls for t in trajectories) == backend_requests > 0
    assert any(t.finished and t.answer == "4" for t in trajectories)
    rewards = torch.tensor([t.reward for t in trajectories])
    assert rewards.std() > 0, [t.reward for t in trajectories]

    group_ids = torch.tensor([t.group_id for t in trajectories])
    advantages = compute_advantages(rewards, group_ids)
    batch = collate(trajectories, advantages.values, tok.pad_token_id)
    policy.train()
    with torch.no_grad():
        old = policy.token_logprobs(
            batch.input_ids, batch.attention_mask, temperature=TEMPERATURE
        ).logprobs
    # The engine's log-probs are the trainer's (at the sampling temperature) on the same
    # multi-turn sequences.
    mask = batch.loss_mask.bool()
    assert (old - batch.rollout_logprobs)[mask].abs().max() < 1e-4
    before = [p.detach().clone() for p in policy.model.parameters()]
    optimizer = torch.optim.AdamW(policy.model.parameters(), lr=1e-3)
    out = policy.token_logprobs(batch.input_ids, batch.attention_mask, temperature=TEMPERATURE)
    loss = cwrpo_loss(
        out.logprobs,
        old,
        batch.advantages,
        batch.loss_mask,
        rollout_logprobs=batch.rollout_logprobs,
        tis_cap=2.0,
    )
    assert torch.isfinite(loss.loss)
    loss.loss.backward()
    optimizer.step()
    changed = [
        not torch.equal(b, p) for b, p in zip(before, policy.model.parameters(), strict=True)
    ]
    assert any(changed)
