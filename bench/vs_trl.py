"""FlowSteer against TRL's GRPOTrainer on one single-turn GRPO workload, paired and interleaved.

For each model and thread count it runs the two trainers alternately (FlowSteer, TRL, FlowSteer,
...; each in a fresh process, so neither inherits the other's caches), takes each run's median
step, forward+backward and generation seconds over the steps after the first (warm-up), and prints
the paired ratios FlowSteer/TRL (< 1: FlowSteer faster). TRL runs from its own venv
(`scripts/setup_trl_bench.sh` builds bench/.venv-trl); see bench/README.md.

    python bench/vs_trl.py --models tiny small --threads 1 2 --rounds 2 --fixed-length [--cpu-clock] [--json out.json]

Both sides run fp32 weights and compute, without autocast or gradient checkpointing (each run
reports its `conditions`, checked before pairing), with OpenMP waiting passively and, unless
`--default-allocator`, the same glibc malloc thresholds.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from grpo_workload import MODELS, build_model, paired_ratios, ratio_table  # noqa: E402

ROOT = HERE.parent
DEFAULT_TRL_PYTHON = HERE / ".venv-trl" / "bin" / "python"

CONDITIONS = {"weights": "float32", "autocast": "no", "gradient_checkpointing": False}
"""What both runs must report (`conditions` in their JSON): each changes the work itself."""


def check_conditions(run: dict, who: str) -> None:
    """Refuse a run that did not hold the workload's conditions (TRL's defaults break two)."""
    got = run.get("conditions")
    if got is None:
        raise ValueError(f"the {who} run reports no 'conditions'; cannot check it is comparable")
    wrong = [f"{k}={got.get(k)!r} (want {v!r})" for k, v in CONDITIONS.items() if got.get(k) != v]
    if wrong:
        raise ValueError(f"the {who} run is not comparable: {', '.join(wrong)}")


def run_env(threads: int, same_allocator: bool = True) -> dict[str, str]:
    """The environment of both trainers' processes.

    OpenMP waits passively, so a thread that waits on a shared machine does not bill spin time.
    With `same_allocator` both processes get, through glibc's environment variables, the malloc
    thresholds `CWRPOModule` sets in its own process on CPU (`retain_host_memory`): the allocator
    belongs to the process, and a fair comparison holds it fixed."""
    from flowsteer.rl.host_memory import MMAP_THRESHOLD, TRIM_THRESHOLD

    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "OMP_NUM_THREADS": str(threads),
        "TOKENIZERS_PARALLELISM": "false",
    }
    env.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    if same_allocator:
        env["MALLOC_TRIM_THRESHOLD_"] = str(TRIM_THRESHOLD)
        env["MALLOC_MMAP_THRESHOLD_"] = str(MMAP_THRESHOLD)
    return env


def summarise(run: dict) -> dict[str, float]:
    """Median step / fwd+bwd / generation seconds of one run, the first (warm-up) step left out."""
    rows = run["steps"][1:] or run["steps"]
    return {k: statistics.median(r.get(k, 0.0) for r in rows) for k in ("step", "fwdbwd", "gen")}


def run_one(
    python: str,
    script: str,
    model: Path,
    threads: int,
    steps: int,
    flags: list[str],
    env: dict[str, str],
) -> dict:
    """One trainer run in a fresh process; its last stdout line is the JSON result."""
    cmd = [
        python,
        str(HERE / script),
        "--model",
        str(model),
        "--threads",
        str(threads),
        "--steps",
        str(steps),
        *flags,
    ]
    load_before = os.getloadavg()[0]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=3600, check=False)
    lines = [line for line in proc.stdout.splitlines() if line.startswith('{"trainer"')]
    if proc.returncode != 0 or not lines:
        raise RuntimeError(f"{' '.join(cmd)} failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    # The machine's 1-minute load average around the run (this run included): how shared it was.
    return {**json.loads(lines[-1]), "load": [load_before, os.getloadavg()[0]]}


def load_line(runs: list[dict]) -> str:
    """One line on how loaded the machine was: the 1-minute load averages the runs saw."""
    loads = [x for run in runs for x in run.get("load", [])]
    if not loads:
        return ""
    return (
        f"load average (1 min) around the runs: median {statistics.median(loads):.1f} "
        f"(min {min(loads):.1f}, max {max(loads):.1f}) on {os.cpu_count()} CPUs"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--models", nargs="+", default=["tiny", "small"], choices=sorted(MODELS))
    parser.add_argument("--threads", nargs="+", type=int, default=[1])
    parser.add_argument(
        "--rounds", type=int, default=2, help="paired runs per model and thread count"
    )
    parser.add_argument("--steps", type=int, default=10, help="optimizer steps per run")
    parser.add_argument(
        "--fixed-length", action="store_true", help="every completion has exactly 64 tokens"
    )
    parser.add_argument(
        "--cpu-clock", action="store_true", help="CPU seconds (process_time) instead of wall"
    )
    parser.add_argument(
        "--trl-python", default=str(DEFAULT_TRL_PYTHON), help="python of the TRL bench venv"
    )
    parser.add_argument(
        "--model-root", default=str(ROOT / "runs" / "bench"), help="where the models are built"
    )
    parser.add_argument(
        "--default-allocator",
        action="store_true",
        help="leave TRL's process on glibc's default malloc thresholds (FlowSteer keeps its own)",
    )
    parser.add_argument("--json", default=None, help="also write every run and ratio here")
    args = parser.parse_args(argv)
    if not Path(args.trl_python).exists():
        parser.error(
            f"--trl-python {args.trl_python} does not exist: run scripts/setup_trl_bench.sh"
        )
    flags = (["--fixed-length"] if args.fixed_length else []) + (
        ["--cpu-clock"] if args.cpu_clock else []
    )
    table, record = [], []
    for name in args.models:
        model = build_model(name, args.model_root)
        for threads in args.threads:
            ours, theirs = [], []
            for r in range(args.rounds):
                pair = [
                    ("flowsteer", sys.executable, "grpo_flowsteer.py"),
                    ("trl", args.trl_python, "grpo_trl.py"),
                ]
                for who, python, script in (
                    pair if r % 2 == 0 else pair[::-1]
                ):  # alternate who goes first
                    env = run_env(threads, not args.default_allocator)
                    result = run_one(python, script, model, threads, args.steps, flags, env)
                    check_conditions(result, who)
                    (ours if who == "flowsteer" else theirs).append(summarise(result))
                    record.append({"model": name, "threads": threads, "round": r, **result})
                    print(
                        f"{name} t={threads} round {r} {who}: {summarise(result)} rewards {result['rewards']}",
                        file=sys.stderr,
                    )
            row = {"model": name, "threads": threads}
            for key in ("step", "fwdbwd", "gen"):
                row[key] = paired_ratios([o[key] for o in ours], [t[key] for t in theirs])
            table.append(row)
    print(ratio_table(table))
    print(load_line(record))
    if args.json:
        Path(args.json).write_text(
            json.dumps({"args": vars(args), "ratios": table, "runs": record}, indent=1)
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
