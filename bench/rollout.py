"""Rollout overhead: G × tasks episodes of the tiny policy on the canvas, no-op executor.

    python bench/rollout.py [--tasks 4] [--group-size 8] [--max-turns 4] [--max-tokens 48]
                            [--seed 0] [--threads 1]

`HFEngine` samples every turn (one generate call per turn for all active episodes); the executor
returns at once, so everything that is not generation is the runner's own work: chat-template
pieces, masks, decoding turns, the canvas, scoring. Collation into a `RolloutBatch` is timed
after the run and counted as overhead too. Prints where the wall time went; the target is
overhead ≤ 10 % of rollout wall time. The tiny policy generates far faster than a real one, so
this is the pessimistic case for the overhead share.
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from flowsteer.canvas import ExecutionResult
from flowsteer.models.tiny import build_tiny_model
from flowsteer.rewards.workflow_reward import WorkflowReward
from flowsteer.rollout import HFEngine, RolloutRunner, SamplingParams, collate
from flowsteer.tasks import Task


class NoOpExecutor:
    """Returns an empty result at once."""

    _result = ExecutionResult(answer="4")

    async def execute(self, graph, task):
        return self._result


class TimedEngine:
    """Wraps an engine and adds up the wall time spent inside its generate calls."""

    def __init__(self, inner: HFEngine) -> None:
        self.inner = inner
        self.seconds = 0.0
        self.calls = 0
        self.tokens = 0

    @property
    def weights_version(self) -> int:
        return self.inner.weights_version

    async def sync_weights(self, policy, version: int) -> None:
        await self.inner.sync_weights(policy, version)

    async def generate(self, requests):
        start = time.perf_counter()
        out = await self.inner.generate(requests)
        self.seconds += time.perf_counter() - start
        self.calls += 1
        self.tokens += sum(len(g.token_ids) for g in out)
        return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=4)
    parser.add_argument("--group-size", type=int, default=8)
    parser.add_argument("--max-turns", type=int, default=4)
    parser.add_argument("--max-tokens", type=int, default=48)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        path = build_tiny_model(tmp)
        model = AutoModelForCausalLM.from_pretrained(path)
        tokenizer = AutoTokenizer.from_pretrained(path)
    tasks = [Task(f"bench/{i}", "bench", "math", f"What is {i} + {i}?", str(2 * i)) for i in range(args.tasks)]  # fmt: skip
    engine = TimedEngine(HFEngine(model, tokenizer))
    runner = RolloutRunner(
        engine,
        tokenizer,
        NoOpExecutor(),
        WorkflowReward(),
        max_turns=args.max_turns,
        sampling=SamplingParams(max_tokens=args.max_tokens),
        min_turn_tokens=8,
    )
    start = time.perf_counter()
    trajectories = asyncio.run(runner.run(tasks, args.group_size, seed=args.seed))
    rollout = time.perf_counter() - start
    start = time.perf_counter()
    batch = collate(trajectories, torch.zeros(len(trajectories)), tokenizer.pad_token_id)
    collation = time.perf_counter() - start
    wall = rollout + collation
    overhead = wall - engine.seconds
    episodes = len(trajectories)
    print(
        f"{episodes} episodes ({args.tasks} tasks x G={args.group_size}), {engine.calls} generate "
        f"calls, {engine.tokens} sampled tokens, batch {tuple(batch.input_ids.shape)}"
    )
    print(f"{'part':<34}{'seconds':>10}{'share':>9}")
    rows = [
        ("engine generate (HFEngine)", engine.seconds),
        ("runner overhead (all but generate)", overhead),
        ("  of which collate", collation),
        ("rollout wall time", wall),
    ]
    for name, seconds in rows:
        print(f"{name:<34}{seconds:>10.3f}{seconds / wall:>9.1%}")
    verdict = "meets" if overhead / wall <= 0.10 else "misses"
    print(f"overhead {overhead / wall:.1%} of wall time ({verdict} the 10 % target)")


if __name__ == "__main__":
    main()
