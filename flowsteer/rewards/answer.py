"""R_ans: one entry point that scores a prediction with the scorer for its task's kind.

The default scorers are built once with their default options; a trainer that wants other
options builds its own scorers and passes one callable (anything matching `AnswerScorer`) to
`WorkflowReward`.
"""

from __future__ import annotations

import asyncio
from typing import Protocol

from flowsteer.rewards.code_answer import CodeAnswerScorer
from flowsteer.rewards.math_answer import MathAnswerScorer
from flowsteer.rewards.qa_answer import QAAnswerScorer
from flowsteer.tasks.task import Task


class AnswerScorer(Protocol):
    """Anything that scores a prediction for a task with a float in [0, 1]."""

    def __call__(self, task: Task, prediction: str | None) -> float: ...


_MATH = MathAnswerScorer()
_QA = QAAnswerScorer()
_CODE = CodeAnswerScorer()


def _check(task: Task) -> None:
    if not isinstance(task, Task):
        raise TypeError(f"task must be a flowsteer.tasks.Task, got {type(task).__name__}")


def score_answer(task: Task, prediction: str | None) -> float:
    """R_ans in [0, 1] for ``prediction`` on ``task``, by ``task.kind``.

    math: 1.0 if the final answers are equivalent; qa: best token F1 over the golds; code:
    1.0 if the candidate (program or completion) passes every hidden test in the sandbox.
    A missing prediction (None) scores 0.0.

    Args:
        task: The task the workflow answered.
        prediction: The workflow's final answer text (for code, the program or completion).

    Returns:
        The score, in [0, 1].

    Example:
        >>> from flowsteer.tasks import Task
        >>> score_answer(Task("g/0", "gsm8k", "math", "2+2?", "4"), "2 + 2 = 4\\n#### 4")
        1.0
        >>> score_answer(Task("q/0", "squad_v2", "qa", "Who?", "Ada Lovelace"), "Lovelace")
        0.6666666666666666
    """
    _check(task)
    if task.kind == "math":
        return _MATH(task, prediction)
    if task.kind == "qa":
        return _QA(task, prediction)
    return _CODE(task, prediction)


async def score_answer_async(task: Task, prediction: str | None) -> float:
    """`score_answer` for asyncio callers: code runs on the sandbox's async path, math and QA
    in a worker thread (math-verify is safe there; see `MathAnswerScorer`)."""
    _check(task)
    if task.kind == "code":
        return await _CODE.score_async(task, prediction)
    return await asyncio.to_thread(score_answer, task, prediction)
