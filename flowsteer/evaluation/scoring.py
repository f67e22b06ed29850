"""Scores an `EpisodeRecord`'s answer with every metric `answer_metrics` lists for its task.

One place for it, so the policy, the baselines and ``run-workflow`` count the same way: every
metric is computed (headline first); `AnswerSkipped` leaves the task out of the accuracy with
its reason; a scorer that raises anything else scores 0 and says why in ``error``.
"""

from __future__ import annotations

from flowsteer.evaluation.record import EpisodeRecord
from flowsteer.rewards import AnswerSkipped, answer_metrics, score_answer_async
from flowsteer.tasks import Task


async def score_record(record: EpisodeRecord, task: Task) -> EpisodeRecord:
    """Fill ``record.scores``, ``headline`` and ``skipped`` for ``record.answer`` on ``task``."""
    metrics = answer_metrics(task)
    record.headline = metrics[0]
    record.scores = {}
    try:
        for metric in metrics:
            record.scores[metric] = float(await score_answer_async(task, record.answer, metric))
    except AnswerSkipped as skipped:
        record.skipped = skipped.reason
        record.scores = {}
    except Exception as exc:  # a scorer bug must not end the evaluation
        record.scores = dict.fromkeys(metrics, 0.0)
        why = f"scoring failed: {type(exc).__name__}: {exc}"
        record.error = f"{record.error}; {why}" if record.error else why
    return record


__all__ = ["score_record"]
