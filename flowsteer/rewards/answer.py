"""R_ans: one entry point that scores a prediction with the scorer for its task's source or kind.

The six evaluation-only sources have their own official metrics, chosen by ``task.source``:
TriviaQA (EM, F1; TriviaQA's normalisation), NQ-open (EM, F1; SQuAD's), MathQA (choice
accuracy), AIME (integer equality), APPS (pass@1 over stdin/stdout or call-based cases) and
DS-1000 (pass@1 by the problem's own harness). Every other task, the six training sources and a
user's own, is scored by its kind: math equivalence, QA token F1 (EM on request), code hidden
tests. `answer_metrics` lists what a task reports, headline first; ``score_answer(task,
prediction, metric=...)`` computes one.

The default scorers are built once with their default options; a trainer that wants other
options builds its own scorers and passes one callable (anything matching `AnswerScorer`) to
`WorkflowReward`.
"""

from __future__ import annotations

import asyncio
from typing import Protocol

from flowsteer.rewards.apps_answer import APPSAnswerScorer
from flowsteer.rewards.choice_answer import ChoiceAnswerScorer
from flowsteer.rewards.code_answer import CodeAnswerScorer
from flowsteer.rewards.ds1000_answer import DS1000AnswerScorer
from flowsteer.rewards.integer_answer import IntegerAnswerScorer
from flowsteer.rewards.math_answer import MathAnswerScorer
from flowsteer.rewards.qa_answer import QAAnswerScorer
from flowsteer.rewards.triviaqa_answer import TriviaQAAnswerScorer
from flowsteer.tasks.task import Task


class AnswerScorer(Protocol):
    """Anything that scores a prediction for a task with a float in [0, 1]."""

    def __call__(self, task: Task, prediction: str | None) -> float: ...


_MATH = MathAnswerScorer()
_QA = QAAnswerScorer()
_CODE = CodeAnswerScorer()

# Per metric, headline first. Code scorers that can run on asyncio expose `score_async`.
_BY_KIND: dict[str, dict[str, AnswerScorer]] = {
    "math": {"accuracy": _MATH},
    "qa": {"f1": _QA, "em": QAAnswerScorer(metric="em")},
    "code": {"pass@1": _CODE},
}
_BY_SOURCE: dict[str, dict[str, AnswerScorer]] = {
    "triviaqa": {"em": TriviaQAAnswerScorer("em"), "f1": TriviaQAAnswerScorer("f1")},
    "nq_open": {"em": QAAnswerScorer(metric="em"), "f1": QAAnswerScorer(metric="f1")},
    "math_qa": {"accuracy": ChoiceAnswerScorer()},
    "aime": {"accuracy": IntegerAnswerScorer()},
    "apps": {"pass@1": APPSAnswerScorer()},
    "ds1000": {"pass@1": DS1000AnswerScorer()},
}


def _check(task: Task) -> None:
    if not isinstance(task, Task):
        raise TypeError(f"task must be a flowsteer.tasks.Task, got {type(task).__name__}")


def _scorers(task: Task) -> dict[str, AnswerScorer]:
    _check(task)
    return _BY_SOURCE.get(task.source) or _BY_KIND[task.kind]


def answer_metrics(task: Task) -> tuple[str, ...]:
    """The metrics `score_answer` computes for ``task``, the headline (and reward) one first.

    Example:
        >>> from flowsteer.tasks import Task
        >>> answer_metrics(Task("t/0", "triviaqa", "qa", "Who?", "Ada"))
        ('em', 'f1')
        >>> answer_metrics(Task("q/0", "squad_v2", "qa", "Who?", "Ada"))
        ('f1', 'em')
    """
    return tuple(_scorers(task))


def _scorer(task: Task, metric: str | None) -> AnswerScorer:
    scorers = _scorers(task)
    if metric is None:
        return next(iter(scorers.values()))
    if metric not in scorers:
        raise ValueError(
            f"task {task.id} ({task.source}) has no metric {metric!r}; it has {tuple(scorers)}"
        )
    return scorers[metric]


def score_answer(task: Task, prediction: str | None, metric: str | None = None) -> float:
    """R_ans in [0, 1] for ``prediction`` on ``task``, by ``task.source`` or ``task.kind``.

    math: 1.0 if the final answers are equivalent; qa: best token F1 over the golds; code:
    1.0 if the candidate (program or completion) passes every hidden test in the sandbox.
    The evaluation-only sources use their official metric instead (module docstring).
    A missing prediction (None) scores 0.0.

    Args:
        task: The task the workflow answered.
        prediction: The workflow's final answer text (for code, the program or completion).
        metric: One of `answer_metrics(task)`; None: the headline metric (the reward's).

    Returns:
        The score, in [0, 1].

    Raises:
        AnswerSkipped: The task cannot be scored on this machine (a DS-1000 problem whose
            library the sandbox cannot import); an evaluation counts it as skipped, not failed.

    Example:
        >>> from flowsteer.tasks import Task
        >>> score_answer(Task("g/0", "gsm8k", "math", "2+2?", "4"), "2 + 2 = 4\\n#### 4")
        1.0
        >>> score_answer(Task("q/0", "squad_v2", "qa", "Who?", "Ada Lovelace"), "Lovelace")
        0.6666666666666666
    """
    return _scorer(task, metric)(task, prediction)


async def score_answer_async(
    task: Task, prediction: str | None, metric: str | None = None
) -> float:
    """`score_answer` for asyncio callers: code runs on the sandbox's async path, math and QA
    in a worker thread (math-verify is safe there; see `MathAnswerScorer`)."""
    scorer = _scorer(task, metric)
    score_async = getattr(scorer, "score_async", None)
    if score_async is not None:
        return await score_async(task, prediction)
    return await asyncio.to_thread(scorer, task, prediction)
