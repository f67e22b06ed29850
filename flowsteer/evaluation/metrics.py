"""`summarize`: the numbers of a report, computed from `EpisodeRecord`s only.

Everything in ``metrics.json`` comes from here, from the stored episodes and nothing else, so a
report can always be recomputed from its ``episodes.jsonl`` (and a resumed evaluation gives the
numbers of an uninterrupted one). Definitions, per system and dataset:

* ``accuracy``: the mean headline score (`answer_metrics`'s first) over scored episodes; every
  metric's mean is in ``metrics``. Skipped tasks (`AnswerSkipped`) are counted apart and left
  out; an episode that failed or gave no answer scores 0, like a wrong one.
* ``turns``, ``policy_tokens``, ``backend_calls``, ``backend_tokens``: means over all episodes.
* ``finish_rate``, ``shortcut_rate``: over policy episodes (``finished`` set; None for the
  baselines). A shortcut is a final workflow with fewer than three operators or no checker
  (an operator of the ``verification`` category), as in training's `EpisodeStats`.
* ``shapes``: the five most frequent final workflows (DSL), with count and accuracy.
* ``overall``: per system, the mean of its datasets' accuracies (each dataset weighs the same).
"""

from __future__ import annotations

import math
import re
from collections import Counter, defaultdict
from collections.abc import Sequence
from typing import Any

from flowsteer.evaluation.record import SYSTEMS, EpisodeRecord
from flowsteer.operators.library import OperatorLibrary

_OPERATOR = re.compile(r"\b[A-Z][A-Za-z]*\b")  # operator names in a DSL; `done` is lower case
SHORTCUT_MIN_OPERATORS = 3
TOP_SHAPES = 5


def _mean(values: Sequence[float]) -> float | None:
    return sum(values) / len(values) if values else None


def is_shortcut(dsl: str, checkers: frozenset[str]) -> bool:
    """A final workflow too small or without a checker to be a real workflow."""
    names = _OPERATOR.findall(dsl)
    return len(names) < SHORTCUT_MIN_OPERATORS or not any(n in checkers for n in names)


def _dataset(records: list[EpisodeRecord], checkers: frozenset[str]) -> dict[str, Any]:
    scored = [r for r in records if r.skipped is None]
    metric_names = list(scored[0].scores) if scored else []
    played = [r for r in records if r.finished is not None]
    rewards = [r.reward for r in records if r.reward is not None]
    components: dict[str, list[float]] = defaultdict(list)
    for r in records:
        for name, value in r.reward_components.items():
            if value is not None and not math.isnan(value):
                components[name].append(value)
    shapes = Counter(r.dsl for r in records if r.dsl)
    top = sorted(shapes.items(), key=lambda item: (-item[1], item[0]))[:TOP_SHAPES]
    return {
        "episodes": len(records),
        "scored": len(scored),
        "skipped": len(records) - len(scored),
        "skipped_reasons": sorted({r.skipped for r in records if r.skipped is not None})[:5],
        "errors": sum(r.error is not None for r in records),
        "headline": scored[0].headline if scored else (records[0].headline if records else ""),
        "accuracy": _mean([r.score for r in scored]),
        "metrics": {m: _mean([r.scores[m] for r in scored]) for m in metric_names},
        "turns": _mean([r.turns for r in records]),
        "policy_tokens": _mean([r.policy_tokens for r in records]),
        "backend_calls": _mean([r.backend_calls for r in records]),
        "backend_tokens": _mean([r.backend_tokens for r in records]),
        "finish_rate": _mean([1.0 if r.finished else 0.0 for r in played]),
        "shortcut_rate": _mean([1.0 if is_shortcut(r.dsl, checkers) else 0.0 for r in played]),
        "reward": _mean(rewards),
        "reward_components": {k: _mean(v) for k, v in sorted(components.items())},
        "shapes": [
            {
                "dsl": dsl,
                "count": count,
                "accuracy": _mean([r.score for r in scored if r.dsl == dsl]),
            }
            for dsl, count in top
        ],
    }


def summarize(
    records: Sequence[EpisodeRecord], library: OperatorLibrary | None = None
) -> dict[str, Any]:
    """Per system (report order), per dataset (sorted): the numbers of the module docstring."""
    library = library if library is not None else OperatorLibrary.default()
    checkers = frozenset(n for n in library.names if library.get(n).category == "verification")
    grouped: dict[str, dict[str, list[EpisodeRecord]]] = defaultdict(lambda: defaultdict(list))
    for r in records:
        grouped[r.system][r.source].append(r)
    order = [s for s in SYSTEMS if s in grouped] + sorted(set(grouped) - set(SYSTEMS))
    out: dict[str, Any] = {}
    for system in order:
        datasets = {src: _dataset(recs, checkers) for src, recs in sorted(grouped[system].items())}
        accs = [d["accuracy"] for d in datasets.values() if d["accuracy"] is not None]
        out[system] = {
            "datasets": datasets,
            "overall": {
                "episodes": sum(d["episodes"] for d in datasets.values()),
                "accuracy": _mean(accs),
            },
        }
    return out


__all__ = ["SHORTCUT_MIN_OPERATORS", "is_shortcut", "summarize"]
