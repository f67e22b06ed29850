"""Asynchronous rollouts (`RolloutCallback(async_rollouts=True)`) against the synchronous loop:
iteration wall time and CPU seconds on the same seeded workload.

Each run is a real `CWRPOModule` fit under a Lightning `Trainer` (CPU, the tiny policy built by
`build_tiny_model`), rolled out by `RolloutCallback` with the default `HFEngine` (the live policy
when synchronous, its own copy when asynchronous): 8 episodes of 2 turns of up to 128 tokens on
the canvas, no backend LLM, a fixed hash of the final workflow as the reward; two optimizer
steps per iteration. Free-text turns by default: the untrained policy writes few valid actions,
so the reward is mostly 0, but the update's work (scoring, forward, backward over the whole
conversations) is the same; ``--constrained`` decodes valid actions, which end early, leaving
little rollout to overlap. Timed per iteration, from one ``on_train_epoch_start`` to the next (the rollout, the
update, the epoch end); the first iteration is left out (asynchronous runs play it synchronously,
nothing overlaps it). Each run is a fresh process; modes alternate within a round. CPU seconds
(`time.process_time`, every thread of the process) show the work done, which overlap does not
reduce; wall time is what it saves. On a shared machine wall times move with the load: compare
ratios from one invocation.

    python bench/async_rollout.py                       # 2 rounds x 2 modes, 4 iterations each
    python bench/async_rollout.py --threads 1 --rounds 3 --json runs/async.json
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
import zlib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
HERE = Path(__file__).resolve().parent


def _reward():
    from flowsteer.rewards.workflow_reward import RewardOutput, WorkflowReward

    class HashReward(WorkflowReward):
        """R(τ) in [0, 1): a fixed hash of the final workflow's DSL (0 when empty)."""

        def __call__(self, task, graph, prediction, *, truncated=False, library=None):
            dsl = graph.to_dsl()
            total = (zlib.crc32(dsl.encode()) % 1000) / 1000 if dsl else 0.0
            return RewardOutput(total=total, components={"div": total}, truncated=truncated)

    return HashReward()


def run_once(
    mode: str,
    iterations: int,
    threads: int,
    new_tokens: int,
    constrained: bool,
    policy_dir: Path,
    out: Path,
) -> None:
    """One fit in this process; writes its per-iteration timings to ``out`` (JSON)."""
    import lightning as L
    import torch

    from callbacks.rollout import RolloutCallback
    from datamodules.task_datamodule import TaskDataModule, TaskFile
    from flowsteer.rl.policy import Policy
    from lightning_modules.cwrpo_module import CWRPOModule

    if str(HERE) not in sys.path:
        sys.path.insert(0, str(HERE))
    from trainer import quiet_trainer

    torch.set_num_threads(threads)
    L.seed_everything(0, verbose=False)

    class Clock(L.Callback):
        """Wall and CPU time at every iteration start and at the end of training."""

        def __init__(self) -> None:
            self.marks: list[tuple[float, float]] = []
            self.rollout: list[float] = []  # seconds the rollout took (wherever it ran)
            self.waited: list[float] = []  # seconds the trainer waited for it

        def on_train_epoch_start(self, trainer, pl_module) -> None:
            self.marks.append((time.perf_counter(), time.process_time()))

        def on_train_epoch_end(self, trainer, pl_module) -> None:
            seconds = rollout.last_metrics["time/rollout_s"]
            self.rollout.append(seconds)
            self.waited.append(rollout.last_metrics.get("time/rollout_wait_s", seconds))

        def on_train_end(self, trainer, pl_module) -> None:
            self.marks.append((time.perf_counter(), time.process_time()))

    data = ROOT / "flowsteer" / "examples" / "data"
    clock = Clock()
    rollout = RolloutCallback(
        reward=_reward(),
        group_size=4,
        max_turns=2,
        max_context_tokens=2048,
        max_new_tokens=new_tokens,
        seed=0,
        progress=False,
        samples_to_log=0,
        constrained_actions=constrained,
        max_think_chars=0,
        max_prompt_chars=8,
        async_rollouts=mode == "async",
    )
    module = CWRPOModule(
        Policy(str(policy_dir)),
        optimizer=lambda params: torch.optim.AdamW(params, lr=1e-3),
        ppo_epochs=1,
        minibatch_size=4,
        micro_batch_size=4,
        seed=0,
    )
    datamodule = TaskDataModule(
        train=[
            TaskFile("gsm8k", str(data / "gsm8k_sample.jsonl")),
            TaskFile("humaneval", str(data / "humaneval_sample.jsonl")),
        ],
        tasks_per_source=1,
        seed=0,
    )
    # The clock first: it sees each iteration start first.
    trainer = quiet_trainer(iterations, [clock, rollout])
    trainer.fit(module, datamodule=datamodule)
    wall = [b[0] - a[0] for a, b in zip(clock.marks, clock.marks[1:], strict=False)]
    cpu = [b[1] - a[1] for a, b in zip(clock.marks, clock.marks[1:], strict=False)]
    record = {"mode": mode, "wall": wall, "cpu": cpu}
    out.write_text(json.dumps({**record, "rollout": clock.rollout, "waited": clock.waited}))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--iterations", type=int, default=4)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads")
    parser.add_argument("--max-new-tokens", type=int, default=128, help="per policy turn")
    parser.add_argument(
        "--constrained",
        action="store_true",
        help="grammar-constrained turns (short: the rollout is then a small part of an iteration)",
    )
    parser.add_argument("--json", type=Path, help="also write every run here")
    parser.add_argument("--one", nargs=3, metavar=("MODE", "POLICY", "OUT"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.one:
        mode, policy, out = args.one
        settings = (args.iterations, args.threads, args.max_new_tokens, args.constrained)
        run_once(mode, *settings, Path(policy), Path(out))
        return 0

    from flowsteer.models.tiny import build_tiny_model

    runs: list[dict] = []
    with tempfile.TemporaryDirectory() as tmp:
        policy = build_tiny_model(Path(tmp) / "policy")
        for r in range(args.rounds):
            order = ("sync", "async") if r % 2 == 0 else ("async", "sync")
            for mode in order:
                out = Path(tmp) / f"{mode}-{r}.json"
                command = [sys.executable, __file__, "--iterations", str(args.iterations)]
                command += ["--threads", str(args.threads)]
                command += ["--max-new-tokens", str(args.max_new_tokens)]
                command += ["--constrained"] if args.constrained else []
                command += ["--one", mode, str(policy), str(out)]
                subprocess.run(command, cwd=ROOT, check=True, capture_output=True, text=True)
                runs.append({"round": r, **json.loads(out.read_text())})
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(runs, indent=1))
    print(table(runs, args))
    return 0


def table(runs: list[dict], args: argparse.Namespace) -> str:
    """Median seconds per iteration (iterations 2..N, all rounds) and per-round ratios."""

    def median(mode: str, key: str, rnd: int | None = None) -> float:
        values = [
            v
            for run in runs
            if run["mode"] == mode and (rnd is None or run["round"] == rnd)
            for v in run[key][1:]
        ]
        return statistics.median(values)

    rows = [
        f"async rollouts, tiny policy, CPU, {args.threads} torch thread(s), "
        f"{args.max_new_tokens} new tokens per turn"
        f"{' (constrained)' if args.constrained else ''}, "
        f"{args.iterations} iterations x {args.rounds} rounds (first iteration excluded)",
        "| mode | wall s / iteration | CPU s / iteration | rollout s | waited for it s |",
        "|---|---|---|---|---|",
    ]
    for mode in ("sync", "async"):
        cells = [median(mode, key) for key in ("wall", "cpu", "rollout", "waited")]
        rows.append(f"| {mode} | " + " | ".join(f"{c:.2f}" for c in cells) + " |")
    ratios = [median("async", "wall", r) / median("sync", "wall", r) for r in range(args.rounds)]
    cpu_ratios = [median("async", "cpu", r) / median("sync", "cpu", r) for r in range(args.rounds)]
    rows.append(
        "async/sync per round: wall "
        + ", ".join(f"{x:.2f}" for x in ratios)
        + "; CPU "
        + ", ".join(f"{x:.2f}" for x in cpu_ratios)
    )
    return "\n".join(rows)


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    raise SystemExit(main())
