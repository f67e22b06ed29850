"""Valid-action rate of a policy, sampled WITHOUT any decoding constraint through the real canvas.

    python bench/sft_validity.py runs/sft/model [--episodes 16] [--max-turns 6] [--seed 0]
    python bench/sft_validity.py runs/tiny-policy            # the untrained baseline

`HFEngine` samples every turn (temperature 1, as RL does, and greedy) on the bundled GSM8K and
HumanEval samples; the canvas judges each turn and runs the workflow on a scripted backend (the
observations of `configs/sft_quickstart.yaml`); the finish constraints are the defaults. Prints the share of turns the canvas accepted,
the share of episodes ended by an accepted ``finish``, and the wall time.
"""

from __future__ import annotations

import argparse
import asyncio
import time

from flowsteer.canvas import FinishConstraints
from flowsteer.canvas.executor import WorkflowExecutor
from flowsteer.llm.scripted import ScriptedBackend
from flowsteer.quickstart import EXAMPLES
from flowsteer.rewards.workflow_reward import WorkflowReward
from flowsteer.rl.policy import Policy
from flowsteer.rollout import HFEngine, RolloutRunner, SamplingParams
from flowsteer.rollout.trajectory import Trajectory
from flowsteer.tasks import load_tasks


def valid_action_rate(trajectories: list[Trajectory]) -> float:
    """Accepted turns over all turns."""
    turns = sum(t.turns for t in trajectories)
    return 1.0 - sum(t.invalid_actions for t in trajectories) / max(turns, 1)


def sample(
    model: str,
    episodes: int,
    max_turns: int,
    seed: int,
    temperature: float,
    max_new_tokens: int = 64,
) -> list[Trajectory]:
    """``episodes`` episodes of the policy in ``model`` on the canvas."""
    policy = Policy(model)
    policy.eval()
    tasks = load_tasks("gsm8k", EXAMPLES / "data" / "gsm8k_sample.jsonl") + load_tasks(
        "humaneval", EXAMPLES / "data" / "humaneval_sample.jsonl"
    )
    runner = RolloutRunner(
        HFEngine(policy.model, policy.tokenizer),
        policy.tokenizer,
        WorkflowExecutor(ScriptedBackend(["The answer is 42."], when_exhausted="cycle")),
        WorkflowReward(),
        max_turns=max_turns,
        finish_constraints=FinishConstraints(),
        sampling=SamplingParams(max_tokens=max_new_tokens, temperature=temperature),
    )
    picked = [tasks[i % len(tasks)] for i in range(episodes)]
    return asyncio.run(runner.run(picked, 1, seed=seed))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model")
    parser.add_argument("--episodes", type=int, default=16)
    parser.add_argument("--max-turns", type=int, default=6)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    for temperature in (1.0, 0.0):
        start = time.perf_counter()
        out = sample(args.model, args.episodes, args.max_turns, args.seed, temperature)
        finished = sum(t.finished for t in out)
        print(
            f"temperature {temperature:g}: valid-action rate {valid_action_rate(out):.3f} over "
            f"{sum(t.turns for t in out)} turns; finished {finished}/{len(out)}; "
            f"{time.perf_counter() - start:.0f} s"
        )
        for t in out[:3]:
            print(f"  {t.dsl or '(empty)'}  turns={t.turns} invalid={t.invalid_actions}")


if __name__ == "__main__":
    main()
