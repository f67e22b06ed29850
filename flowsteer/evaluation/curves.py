"""Training curves from a run's TensorBoard event files, drawn with matplotlib.

`flowsteer plot RUN_DIR` reads every event file under the run directory (a resumed run writes a
new ``version_k`` folder; each one is a separate line, so a resume shows where it began), keeps
the scalar tags asked for, and draws one panel per tag against the logged step. Reading goes
through TensorBoard's own event reader, so the numbers are exactly what TensorBoard shows.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

# What a user first wants to see: is the policy learning to build valid, diverse workflows?
DEFAULT_TAGS: tuple[str, ...] = (
    "rollout/reward/total",
    "rollout/reward/div",
    "rollout/finish_rate",
    "rollout/invalid_action_rate",
    "rollout/constraint_mass",
    "rollout/reward/answer",
    "train/loss",
    "train/entropy",
)


@dataclass(frozen=True)
class Curve:
    """One scalar tag of one event directory.

    Attributes:
        run: The event directory, relative to the run directory (``"version_0"``, ``"."``).
        tag: The scalar's name (``"rollout/reward/total"``).
        steps: The logged steps, ascending.
        values: The values at those steps.
    """

    run: str
    tag: str
    steps: tuple[int, ...]
    values: tuple[float, ...]


def read_curves(run_dir: str | Path, tags: tuple[str, ...] | None = None) -> list[Curve]:
    """Every scalar curve under `run_dir` (all tags when `tags` is ``None``), sorted by tag, run.

    Raises:
        FileNotFoundError: `run_dir` does not exist or holds no TensorBoard event file.
    """
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    root = Path(run_dir)
    if not root.is_dir():
        raise FileNotFoundError(f"{root}: no such run directory")
    event_dirs = sorted({p.parent for p in root.rglob("events.out.tfevents.*")})
    if not event_dirs:
        raise FileNotFoundError(
            f"{root}: no TensorBoard event files (events.out.tfevents.*) under it"
        )
    curves = []
    for directory in event_dirs:
        accumulator = EventAccumulator(str(directory), size_guidance={"scalars": 0})
        accumulator.Reload()
        for tag in accumulator.Tags().get("scalars", []):
            if tags is not None and tag not in tags:
                continue
            by_step = {
                e.step: e.value for e in accumulator.Scalars(tag)
            }  # a resume may repeat a step
            steps = tuple(sorted(by_step))
            name = str(directory.relative_to(root)) if directory != root else "."
            curves.append(Curve(name, tag, steps, tuple(float(by_step[s]) for s in steps)))
    return sorted(curves, key=lambda c: (c.tag, c.run))


def plot_curves(
    run_dir: str | Path,
    out: str | Path | None = None,
    tags: tuple[str, ...] | None = None,
    title: str | None = None,
) -> Path:
    """Draw `tags` (the default set when ``None``; those never logged are left out) into a PNG.

    Returns the written file (default ``RUN_DIR/curves.png``).

    Raises:
        FileNotFoundError: no event files under `run_dir`.
        ValueError: none of the tags was logged in this run (the message lists what was).
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    wanted = DEFAULT_TAGS if tags is None else tags
    every = read_curves(run_dir)
    curves = [c for c in every if c.tag in wanted]
    if not curves:
        logged = sorted({c.tag for c in every})
        raise ValueError(
            f"{run_dir}: none of {list(wanted)} was logged; logged scalars: {logged or 'none'}"
        )
    shown = [t for t in wanted if any(c.tag == t for c in curves)]
    cols = min(3, len(shown))
    rows = -(-len(shown) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4.2 * cols, 3.0 * rows), squeeze=False)
    for ax, tag in zip(axes.flat, shown, strict=False):
        lines = [c for c in curves if c.tag == tag]
        for c in lines:
            ax.plot(
                c.steps, c.values, marker="o", markersize=3, label=c.run if len(lines) > 1 else None
            )
        ax.set_title(tag, fontsize=10)
        ax.set_xlabel("step", fontsize=8)
        ax.grid(alpha=0.3)
        if len(lines) > 1:
            ax.legend(fontsize=7)
    for ax in list(axes.flat)[len(shown) :]:
        ax.axis("off")
    fig.suptitle(title or str(run_dir), fontsize=11)
    fig.tight_layout()
    path = Path(out) if out is not None else Path(run_dir) / "curves.png"
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


__all__ = ["DEFAULT_TAGS", "Curve", "plot_curves", "read_curves"]
