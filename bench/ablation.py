"""The paper's reward-mode ablation on the SimulatedBackend (a simulator, not a model).

    python bench/ablation.py                       # 3 modes x 3 seeds, writes the table and plot
    python bench/ablation.py --seeds 0 1 --iterations 4 --out runs/ablation_small

One seeded setup (`configs/ablation.yaml`) is trained through the real trainer (`flowsteer fit`:
`CWRPOModule`, `RolloutCallback` with grammar-constrained actions, the canvas, executor and
reward) under each reward mode (``gated``: the paper's conditional release, ``ungated``,
``answer_only``) and each seed. All runs start from one warm-started policy
(`configs/ablation_sft.yaml`, trained once here unless ``--policy`` names one), so every mode
starts from the same mix of shortcut chains and structured workflows and the study shows which
way each reward moves that mix.

Each run's final figures are the means of its last ``--last`` iterations' rollout statistics
(TensorBoard event files): total reward (each mode on its own scale), answer accuracy, R_div
pass rate (the gate's condition), shortcut rate (final workflows with fewer than three operators
or no checker) and operators per workflow. The first iteration's values (the warm start, before
any update) are kept too. Per mode: mean and standard deviation over seeds. Writes
``OUT/ablation.json``, ``OUT/ablation.md`` and the plot (``--plot``, default
``docs/img/ablation.png``); prints the markdown table and the wall and CPU time.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import resource
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
MODES = ("gated", "ungated", "answer_only")

# Column -> the rollout statistic it reads.
METRICS: dict[str, str] = {
    "total": "rollout/reward/total",
    "accuracy": "rollout/reward/answer",
    "div_pass": "rollout/div_pass_rate",
    "shortcut": "rollout/shortcut_rate",
    "operators": "rollout/operators",
}
LABELS = {
    "total": "total reward",
    "accuracy": "answer accuracy",
    "div_pass": "R_div pass rate",
    "shortcut": "shortcut rate",
    "operators": "operators / workflow",
}


@dataclass(frozen=True)
class RunResult:
    """One training run's figures.

    Attributes:
        mode: The reward mode.
        seed: The run's seed.
        final: Metric -> mean over the last iterations.
        start: Metric -> the first iteration's value (the starting policy).
        curves: Metric -> its value per iteration.
        wall_s: The run's wall time.
    """

    mode: str
    seed: int
    final: dict[str, float]
    start: dict[str, float]
    curves: dict[str, list[float]]
    wall_s: float


def summarize_run(
    mode: str, seed: int, curves: Mapping[str, Sequence[float]], last: int, wall_s: float = 0.0
) -> RunResult:
    """A run's figures from its per-iteration values (tag -> values, as logged).

    Raises:
        ValueError: A metric was never logged, or ``last`` < 1.
    """
    if last < 1:
        raise ValueError(f"last must be >= 1, got {last}")
    final, start, kept = {}, {}, {}
    for name, tag in METRICS.items():
        values = [float(v) for v in curves.get(tag, ())]
        if not values:
            raise ValueError(f"run {mode}/seed {seed}: {tag} was never logged")
        tail = values[-last:]
        final[name] = sum(tail) / len(tail)
        start[name] = values[0]
        kept[name] = values
    return RunResult(mode, seed, final, start, kept, wall_s)


def _mean_std(values: Sequence[float]) -> tuple[float, float]:
    mean = sum(values) / len(values)
    if len(values) < 2:
        return mean, 0.0
    return mean, math.sqrt(sum((v - mean) ** 2 for v in values) / (len(values) - 1))


def aggregate(runs: Sequence[RunResult]) -> dict[str, dict[str, dict[str, float]]]:
    """Mode -> metric -> ``mean``, ``std`` (sample, over seeds), ``start`` (mean first
    iteration) and ``n``; modes in `MODES` order, then any other."""
    modes = [m for m in MODES if any(r.mode == m for r in runs)]
    modes += [m for m in dict.fromkeys(r.mode for r in runs) if m not in modes]
    out: dict[str, dict[str, dict[str, float]]] = {}
    for mode in modes:
        mine = [r for r in runs if r.mode == mode]
        out[mode] = {}
        for name in METRICS:
            mean, std = _mean_std([r.final[name] for r in mine])
            start = sum(r.start[name] for r in mine) / len(mine)
            out[mode][name] = {"mean": mean, "std": std, "start": start, "n": float(len(mine))}
    return out


def markdown_table(table: Mapping[str, Mapping[str, Mapping[str, float]]]) -> str:
    """One row per mode: ``mean ± std`` of each metric over seeds."""
    head = "| reward mode | seeds | " + " | ".join(LABELS[m] for m in METRICS) + " |"
    rows = [head, "|" + "---|" * (len(METRICS) + 2)]
    for mode, metrics in table.items():
        n = int(next(iter(metrics.values()))["n"])
        cells = [f"{metrics[m]['mean']:.2f} ± {metrics[m]['std']:.2f}" for m in METRICS]
        rows.append(f"| `{mode}` | {n} | " + " | ".join(cells) + " |")
    first = next(iter(table.values()), None)
    if first is not None:
        cells = [f"{first[m]['start']:.2f}" for m in METRICS]
        rows.append("| start (iteration 1, `" + next(iter(table)) + "`) | | " + " | ".join(cells))
        rows[-1] += " |"
    return "\n".join(rows)


def plot(runs: Sequence[RunResult], path: Path) -> None:
    """Top row: each metric's final value per mode (bar: mean over seeds, dots: seeds).
    Bottom row: shortcut rate, R_div pass rate and accuracy per iteration (mean over seeds)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    table = aggregate(runs)
    modes = list(table)
    colors = dict(zip(MODES, ("tab:blue", "tab:orange", "tab:green"), strict=True))
    fig, axes = plt.subplots(2, len(METRICS), figsize=(3.2 * len(METRICS), 6.2))
    for ax, name in zip(axes[0], METRICS, strict=True):
        for i, mode in enumerate(modes):
            color = colors.get(mode, "tab:gray")
            ax.bar(i, table[mode][name]["mean"], color=color, alpha=0.6)
            seeds = [r.final[name] for r in runs if r.mode == mode]
            ax.scatter([i] * len(seeds), seeds, color="black", s=10, zorder=3)
        ax.set_xticks(range(len(modes)), modes, rotation=20)
        ax.set_title(f"final {LABELS[name]}", fontsize=10)
        ax.axhline(0, color="gray", lw=0.5)
    for ax, name in zip(axes[1], ("shortcut", "div_pass", "accuracy", "operators"), strict=False):
        for mode in modes:
            series = [r.curves[name] for r in runs if r.mode == mode]
            length = min(len(s) for s in series)
            mean = [sum(s[i] for s in series) / len(series) for i in range(length)]
            ax.plot(range(1, length + 1), mean, color=colors.get(mode, "tab:gray"), label=mode)
        ax.set_title(f"{LABELS[name]} per iteration", fontsize=10)
        ax.set_xlabel("RL iteration")
        ax.xaxis.get_major_locator().set_params(integer=True)
    axes[1][0].legend(fontsize=8)
    axes[1][-1].axis("off")
    fig.suptitle(
        "Reward-mode ablation on the SimulatedBackend (a simulator, not a model); "
        f"{len(runs)} runs",
        fontsize=11,
    )
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=90)
    plt.close(fig)


def read_run(run_dir: Path) -> dict[str, list[float]]:
    """Tag -> per-iteration values from the run's TensorBoard event files."""
    from flowsteer.evaluation.curves import read_curves

    return {c.tag: list(c.values) for c in read_curves(run_dir, tuple(METRICS.values()))}


def run_config(
    base: Mapping, mode: str, seed: int, policy: str, iterations: int, run_dir: Path
) -> dict:
    """`configs/ablation.yaml` with the run's mode, seed, policy, iterations and directory."""
    config = json.loads(json.dumps(base))  # a deep copy of plain YAML data
    config["seed_everything"] = seed
    config["trainer"]["max_epochs"] = iterations
    config["trainer"]["default_root_dir"] = str(run_dir)
    rollout = next(
        c for c in config["trainer"]["callbacks"] if c["class_path"].endswith("RolloutCallback")
    )
    args = rollout["init_args"]
    args["seed"] = seed
    args["reward"]["init_args"]["mode"] = mode
    args["executor"]["init_args"]["backend"]["init_args"]["seed"] = seed
    config["model"]["seed"] = seed
    config["model"]["policy"]["init_args"]["model"] = policy
    config["data"]["seed"] = seed
    return config


def _flowsteer(args: list[str], log: Path) -> float:
    """Run ``flowsteer ARGS`` from the repo root (output to ``log``); its wall time."""
    start = time.monotonic()
    cmd = [sys.executable, "-c", "import sys; from lightning_modules.cli import main; "
           "sys.exit(main(sys.argv[1:]))", *args]  # fmt: skip
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
    }
    with log.open("w") as out:
        done = subprocess.run(cmd, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT, env=env)
    if done.returncode != 0:
        tail = log.read_text().strip().splitlines()[-5:]
        raise RuntimeError(f"flowsteer {args[0]} failed (see {log}):\n" + "\n".join(tail))
    return time.monotonic() - start


def _relative(path: str) -> str:
    """``path`` relative to the repository root when it lies inside it (portable json)."""
    resolved = Path(path).resolve()
    return str(resolved.relative_to(ROOT)) if ROOT in resolved.parents else path


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", default="configs/ablation.yaml")
    parser.add_argument("--sft-config", default="configs/ablation_sft.yaml")
    parser.add_argument("--policy", help="start every run from this model (skips the warm start)")
    parser.add_argument("--sft-steps", type=int, help="override the warm start's max_steps")
    parser.add_argument("--modes", nargs="+", default=list(MODES), choices=MODES)
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--iterations", type=int, default=10, help="RL iterations per run")
    parser.add_argument("--last", type=int, default=3, help="final = mean of the last N")
    parser.add_argument("--out", default="runs/ablation", help="run directories and tables")
    parser.add_argument("--plot", default="docs/img/ablation.png")
    parser.add_argument("--replot", metavar="JSON", help="redraw the plot from a study's json")
    args = parser.parse_args(argv)
    if args.iterations < 1:
        parser.error("--iterations must be >= 1")
    if args.replot:
        saved = json.loads(Path(args.replot).read_text())
        plot([RunResult(**r) for r in saved["runs"]], (ROOT / args.plot).resolve())
        print(markdown_table(saved["table"]))
        return 0
    out = (ROOT / args.out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    start = time.monotonic()

    policy = args.policy
    sft_s = 0.0
    if policy is None:
        policy = str(out / "sft" / "model")
        sft = [
            "sft",
            "--config",
            args.sft_config,
            "--trainer.default_root_dir",
            str(out / "sft"),
            "--trainer.logger.init_args.save_dir",
            str(out),
            "--model.export_dir",
            policy,
        ]
        if args.sft_steps is not None:
            sft += ["--trainer.max_steps", str(args.sft_steps)]
            sft += ["--model.scheduler.init_args.total_steps", str(args.sft_steps)]
        sft_s = _flowsteer(sft, out / "sft.log")
        print(f"warm start: {policy} ({sft_s:.0f} s)", flush=True)

    base = yaml.safe_load((ROOT / args.config).read_text())
    runs = []
    for seed in args.seeds:  # seed-major: a cut-short study still has every mode
        for mode in args.modes:
            run_dir = out / mode / f"seed{seed}"
            if run_dir.exists():
                import shutil

                shutil.rmtree(run_dir)
            run_dir.mkdir(parents=True)
            config_path = run_dir / "config_in.yaml"
            config = run_config(base, mode, seed, policy, args.iterations, run_dir)
            config_path.write_text(yaml.safe_dump(config, sort_keys=False))
            wall = _flowsteer(["fit", "--config", str(config_path)], run_dir / "fit.log")
            result = summarize_run(mode, seed, read_run(run_dir), args.last, wall)
            runs.append(result)
            finals = ", ".join(f"{k} {v:.2f}" for k, v in result.final.items())
            print(f"{mode} seed {seed}: {finals} ({wall:.0f} s)", flush=True)

    table = aggregate(runs)
    wall_s = time.monotonic() - start
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu_s = usage.ru_utime + usage.ru_stime
    md = markdown_table(table)
    setup = (
        f"{len(args.seeds)} seeds x {len(args.modes)} modes, {args.iterations} RL iterations "
        f"each (final = mean of the last {args.last}); {args.config}; wall {wall_s / 60:.1f} min, "
        f"CPU {cpu_s / 60:.1f} min (warm start {sft_s:.0f} s)"
    )
    (out / "ablation.md").write_text(f"{md}\n\n{setup}\n")
    (out / "ablation.json").write_text(
        json.dumps(
            {
                "setup": {
                    "config": args.config,
                    "policy": _relative(policy),
                    "seeds": args.seeds,
                    "modes": args.modes,
                    "iterations": args.iterations,
                    "last": args.last,
                    "wall_s": wall_s,
                    "cpu_s": cpu_s,
                    "sft_s": sft_s,
                },
                "table": table,
                "runs": [asdict(r) for r in runs],
            },
            indent=1,
        )
    )
    plot(runs, (ROOT / args.plot).resolve())
    print(md)
    print(setup)
    return 0


if __name__ == "__main__":
    sys.exit(main())
