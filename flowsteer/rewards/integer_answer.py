"""Integer answer scorer (AIME): the prediction's final answer equals the gold integer.

The final answer is found as for math (`extract_final_answer`) and cleaned the same way
(`normalize_math_answer`: ``$``, bold, ``\\text{}``, thousands commas); it must then be a
whole number (``33``, ``033``, ``33.0``) equal to the gold. No symbolic equivalence: AIME's
answers are integers from 0 to 999, and ``\\frac{66}{2}`` is not how one is written.
"""

from __future__ import annotations

import re

from flowsteer.rewards.math_answer import extract_final_answer, normalize_math_answer
from flowsteer.tasks.task import Task

_WHOLE_RE = re.compile(r"^[+-]?\d+(?:\.0*)?$")


def as_integer(answer: str) -> int | None:
    """The integer a final answer states, or None when it is not a whole number.

    Example:
        >>> as_integer("$033$"), as_integer("33.0"), as_integer("33.5"), as_integer("x")
        (33, 33, None, None)
    """
    norm, percent = normalize_math_answer(answer)
    norm = norm.replace(" ", "")
    if percent or not _WHOLE_RE.match(norm):
        return None
    return int(norm.split(".")[0])


class IntegerAnswerScorer:
    """Score 1.0 when the prediction's final answer is the gold integer, else 0.0.

    Example:
        >>> from flowsteer.tasks import Task
        >>> task = Task("aime/1", "aime", "math", "...", "70")
        >>> score = IntegerAnswerScorer()
        >>> score(task, "so the answer is \\\\boxed{070}"), score(task, "70.5"), score(task, None)
        (1.0, 0.0, 0.0)
    """

    def __call__(self, task: Task, prediction: str | None) -> float:
        """Integer equality of the final answers."""
        if prediction is None:
            return 0.0
        if not isinstance(prediction, str):
            raise TypeError(f"prediction must be a str or None, got {type(prediction).__name__}")
        found = extract_final_answer(prediction)
        gold = as_integer(task.answer)
        if found is None or gold is None:
            return 0.0
        return float(as_integer(found) == gold)
