"""The report's PNG plots, drawn with matplotlib's Agg canvas from a `summarize` result.

Figures are built with `matplotlib.figure.Figure` and `FigureCanvasAgg` directly (no pyplot), so
drawing touches no global backend state and works on machines without a display. matplotlib is
imported when a plot is drawn, not when this module is imported.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

COST_PANELS = (
    ("turns", "mean policy turns"),
    ("policy_tokens", "mean policy tokens"),
    ("backend_calls", "mean backend calls"),
    ("backend_tokens", "mean backend tokens"),
)


def _figure(width: float, height: float, rows: int = 1, cols: int = 1) -> tuple[Any, list[Any]]:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=100)
    FigureCanvasAgg(fig)
    axes = fig.subplots(rows, cols, squeeze=False)
    return fig, [ax for row in axes for ax in row]


def _bars(ax: Any, groups: list[str], series: dict[str, list[float | None]], title: str) -> None:
    """Grouped bars: one group per dataset, one bar per series (a missing value is no bar)."""
    n = max(1, len(series))
    width = 0.8 / n
    for i, (name, values) in enumerate(series.items()):
        xs = [g + (i - (n - 1) / 2) * width for g in range(len(groups))]
        ys = [0.0 if v is None else float(v) for v in values]
        bars = ax.bar(xs, ys, width=width, label=name)
        for bar, value in zip(bars, values, strict=True):
            if value is not None:
                ax.annotate(
                    f"{value:.2f}" if value < 100 else f"{value:.0f}",
                    (bar.get_x() + bar.get_width() / 2, bar.get_height()),
                    ha="center", va="bottom", fontsize=7,
                )  # fmt: skip
    ax.set_xticks(range(len(groups)))
    ax.set_xticklabels(groups, fontsize=8)
    ax.set_title(title, fontsize=10)
    if series:
        ax.legend(fontsize=7)


def _datasets(summary: dict[str, Any]) -> list[str]:
    return sorted({src for s in summary.values() for src in s["datasets"]})


def _series(summary: dict[str, Any], field: str, datasets: list[str]) -> dict[str, list]:
    return {
        system: [s["datasets"].get(d, {}).get(field) for d in datasets]
        for system, s in summary.items()
    }


def _save(fig: Any, path: Path) -> Path:
    fig.tight_layout()
    fig.savefig(path, format="png")
    return path


def write_plots(summary: dict[str, Any], out_dir: str | Path) -> dict[str, Path]:
    """Write accuracy.png, cost.png and reward_components.png into ``out_dir``."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    datasets = _datasets(summary)
    paths: dict[str, Path] = {}

    fig, (ax,) = _figure(max(6.0, 1.6 * len(datasets) + 3), 4.0)
    _bars(ax, datasets, _series(summary, "accuracy", datasets), "accuracy (headline metric)")
    ax.set_ylim(0, 1.1)
    paths["accuracy"] = _save(fig, out / "accuracy.png")

    fig, axes = _figure(max(9.0, 2.4 * len(datasets) + 4), 7.0, 2, 2)
    for ax, (field, title) in zip(axes, COST_PANELS, strict=True):
        _bars(ax, datasets, _series(summary, field, datasets), title)
    paths["cost"] = _save(fig, out / "cost.png")

    names = sorted(
        {
            c
            for s in summary.values()
            for d in s["datasets"].values()
            for c in d["reward_components"]
        }
    )
    fig, (ax,) = _figure(max(7.0, 0.9 * len(names) + 3), 4.0)
    series = {
        f"{system} {d}": [s["datasets"][d]["reward_components"].get(c) for c in names]
        for system, s in summary.items()
        for d in sorted(s["datasets"])
        if s["datasets"][d]["reward_components"]
    }
    if names:
        _bars(ax, names, series, "mean reward components (policy episodes)")
    else:
        ax.text(0.5, 0.5, "no policy episodes: no reward components", ha="center", va="center")
        ax.set_axis_off()
    paths["reward_components"] = _save(fig, out / "reward_components.png")
    return paths


__all__ = ["write_plots"]
