"""Evaluation: a policy and its baselines on held-out tasks, written as one report directory.

Text side: `EpisodeRecord` (one episode, as `episodes.jsonl` stores it), `EpisodeStore` (append,
resume, fingerprint), `RunIdentity`, `summarize` (the metrics), `write_report` (metrics.json,
report.md, report.html, plots), the baselines (`direct`, `cot`, `fixed`) and
`run_workflow_tasks`. The policy side (`flowsteer.evaluation.policy_eval`) imports torch lazily,
so every module here imports without it (docs/design.md §7).
"""

from __future__ import annotations

from flowsteer.evaluation.baselines import FIXED_WORKFLOWS, fixed_workflow
from flowsteer.evaluation.identity import RunIdentity, dataset_entry
from flowsteer.evaluation.metrics import summarize
from flowsteer.evaluation.record import EpisodeRecord
from flowsteer.evaluation.report import write_report
from flowsteer.evaluation.store import EpisodeStore, FingerprintMismatch

__all__ = [
    "FIXED_WORKFLOWS",
    "EpisodeRecord",
    "EpisodeStore",
    "FingerprintMismatch",
    "RunIdentity",
    "dataset_entry",
    "fixed_workflow",
    "summarize",
    "write_report",
]
