"""`AnswerSkipped`: a task that cannot be scored on this machine, as distinct from a wrong answer.

Raised by `score_answer` (and its async twin) instead of returning a score, e.g. for a DS-1000
problem whose library the sandbox cannot import. An evaluation counts such tasks as skipped,
with the reason, and leaves them out of the accuracy; it never counts them as failed. Training
sources never raise it.
"""

from __future__ import annotations


class AnswerSkipped(Exception):
    """The task cannot be scored here; `reason` says why (for the evaluation report).

    Attributes:
        task_id: The task that was skipped.
        reason: A one-line explanation, e.g. which library is missing.
    """

    def __init__(self, task_id: str, reason: str) -> None:
        super().__init__(f"{task_id}: skipped: {reason}")
        self.task_id = task_id
        self.reason = reason
