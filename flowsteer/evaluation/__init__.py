"""Looking at results: training curves (`curves`), and a policy and its baselines on held-out
tasks, written as one report directory.

Text side: `EpisodeRecord` (one episode, as `episodes.jsonl` stores it), `EpisodeStore` (append,
resume, fingerprint), `RunIdentity`, `summarize` (the metrics), `write_report` (metrics.json,
report.md, report.html, plots), the baselines (`direct`, `cot`, `fixed`) and
`run_workflow_tasks`. The policy side (`flowsteer.evaluation.policy_eval`) imports torch lazily,
so every module here imports without it (docs/design.md §7, §10).
"""

from __future__ import annotations

import importlib
from typing import Any

# Lazy, so `flowsteer --help` (which registers `eval`) does not import the executor and rewards.
_EXPORTS = {
    "FIXED_WORKFLOWS": "baselines",
    "fixed_workflow": "baselines",
    "RunIdentity": "identity",
    "dataset_entry": "identity",
    "summarize": "metrics",
    "EpisodeRecord": "record",
    "write_report": "report",
    "EpisodeStore": "store",
    "FingerprintMismatch": "store",
}


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'flowsteer.evaluation' has no attribute {name!r}")
    return getattr(importlib.import_module(f"flowsteer.evaluation.{_EXPORTS[name]}"), name)


__all__ = sorted(_EXPORTS)
