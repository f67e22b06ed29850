"""The single-turn GRPO workload both trainers of `vs_trl.py` run: models, prompts, reward, ratios.

Everything here is deterministic and offline, so the FlowSteer and TRL processes see the same
prompts in the same order and the same reward, and `vs_trl.py` only has to pair their timings.
"""

from __future__ import annotations

import argparse
import random
import statistics
from dataclasses import dataclass
from pathlib import Path

SEED = 1234
SUBJECTS = ("lake", "tower", "violin", "comet", "harbor", "meadow", "lantern", "glacier")
FORMS = (
    "Say something about the {s} ({i}).",
    "One line on a {s}, case {i}.",
    "What is near the {s}? Item {i}.",
    "Describe the {s} briefly: {i}.",
)

# name -> build_tiny_model keyword arguments. tiny is `flowsteer tiny-model`'s default config.
MODELS: dict[str, dict[str, int]] = {
    "tiny": {},
    "small": {"hidden_size": 256, "num_layers": 4, "intermediate_size": 1024},
}


@dataclass(frozen=True)
class Workload:
    """One optimizer step = `prompts_per_step` prompts x `group_size` completions."""

    group_size: int = 8
    prompts_per_step: int = 4
    max_new_tokens: int = 64
    num_prompts: int = 64
    lr: float = 3e-3
    clip_eps: float = 0.2
    max_grad_norm: float = 1.0
    target: str = "x"
    seed: int = SEED


def run_arguments(description: str) -> argparse.ArgumentParser:
    """The command line both trainers' scripts take (`vs_trl.py` passes the same flags to each)."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--model", required=True)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--fixed-length", action="store_true")
    parser.add_argument(
        "--cpu-clock", action="store_true", help="time.process_time instead of wall time"
    )
    return parser


def prompts(n: int) -> list[str]:
    """n short plain prompts (no randomness)."""
    return [
        FORMS[i % len(FORMS)].format(s=SUBJECTS[(i * 3) % len(SUBJECTS)], i=i) for i in range(n)
    ]


def reward(completions: list[str], target: str) -> list[float]:
    """1.0 when the decoded completion contains `target`."""
    return [1.0 if target in text else 0.0 for text in completions]


def step_prompts(work: Workload, step: int) -> list[int]:
    """The prompt indices of one optimizer step: a seeded permutation walked in chunks."""
    order = list(range(work.num_prompts))
    random.Random(work.seed).shuffle(order)
    return [
        order[(step * work.prompts_per_step + k) % len(order)] for k in range(work.prompts_per_step)
    ]


def build_model(name: str, root: str | Path) -> Path:
    """Build (once) the named offline model under root/name."""
    from flowsteer.models.tiny import build_tiny_model

    if name not in MODELS:
        raise ValueError(f"unknown model {name!r}: choose from {sorted(MODELS)}")
    out = Path(root) / name
    if (out / "config.json").exists():
        return out
    return build_tiny_model(out, **MODELS[name])


def paired_ratios(ours: list[float], theirs: list[float]) -> dict[str, float]:
    """Ratios of paired runs (ours[i] / theirs[i]): median, min, max; < 1 means ours is faster."""
    if len(ours) != len(theirs) or not ours:
        raise ValueError(f"need equal, non-empty paired lists, got {len(ours)} and {len(theirs)}")
    if any(t <= 0 for t in theirs):
        raise ValueError("a paired TRL figure is not positive")
    ratios = [a / b for a, b in zip(ours, theirs, strict=True)]
    return {
        "median": statistics.median(ratios),
        "min": min(ratios),
        "max": max(ratios),
        "n": len(ratios),
    }


def ratio_table(rows: list[dict]) -> str:
    """Markdown table of rows with model, threads, and {step, fwdbwd, gen} ratio dicts."""
    lines = [
        "| model | threads | runs | step FS/TRL | fwd+bwd FS/TRL | generation FS/TRL |",
        "|---|---|---|---|---|---|",
    ]
    for r in rows:
        cells = [
            f"{r[k]['median']:.2f}x ({r[k]['min']:.2f}-{r[k]['max']:.2f})"
            for k in ("step", "fwdbwd", "gen")
        ]
        lines.append(
            f"| {r['model']} | {r['threads']} | {r['step']['n']} | " + " | ".join(cells) + " |"
        )
    return "\n".join(lines)
