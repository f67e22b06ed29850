"""Multiple-choice answer scorer (MathQA): the right letter, or the right option's value.

The prediction's final answer is found as for math (`extract_final_answer`: the last boxed,
a final-answer line, a bare short answer), falling back to the whole prediction. It scores 1.0
when it names the correct option (``c``, ``(C)``, ``c ) 30``, ``option c``) or, naming no
letter, equals the correct option's value: the same text once spaces are dropped
(``1 : 2`` = ``1:2``), or the same single number (``400`` for ``rs . 400``, ``12%`` for
``12 %``, ``0.5`` for ``1 / 2``). A letter always wins over a value, so ``(a) 30`` is option a.
"""

from __future__ import annotations

import re
from fractions import Fraction

from flowsteer.rewards.math_answer import extract_final_answer, normalize_math_answer
from flowsteer.tasks.task import Task

_LETTER_RE = re.compile(r"^(?:option|choice|answer)?\s*[:(]?\s*([a-e])\s*(?:[).:]|$)", re.I)
_NUMBER_RE = re.compile(r"-?\d+(?:\.\d+)?(?:/\d+(?:\.\d+)?)?")
_DECORATION_RE = re.compile(r"\\text\{([^{}]*)\}|[*`$]|\\")


def chosen_letter(answer: str) -> str | None:
    """The option letter an answer names, if it names one.

    Example:
        >>> chosen_letter("(C) 27.675"), chosen_letter("option b"), chosen_letter("38")
        ('c', 'b', None)
    """
    text = _DECORATION_RE.sub(lambda m: m.group(1) or "", answer).strip()
    match = _LETTER_RE.match(text)
    return match.group(1).lower() if match else None


def _number(text: str) -> Fraction | None:
    numbers = _NUMBER_RE.findall(text)
    if len(numbers) != 1:
        return None
    top, _, bottom = numbers[0].partition("/")
    if bottom and Fraction(bottom) == 0:
        return None
    return Fraction(top) / (Fraction(bottom) if bottom else 1)


def same_value(option: str, answer: str) -> bool:
    """Whether ``answer`` equals an option's value (see the module docstring).

    Example:
        >>> same_value("rs . 400", "400"), same_value("1 : 2", "1:2"), same_value("38", "3.8")
        (True, True, False)
    """
    compact_option = re.sub(r"\s+", "", option.lower()).rstrip(".")
    norm, _ = normalize_math_answer(answer)
    compact_answer = re.sub(r"\s+", "", norm.lower()).rstrip(".")
    if not compact_answer:
        return False
    if compact_option == compact_answer:
        return True
    gold, given = _number(compact_option.replace(",", "")), _number(compact_answer)
    return gold is not None and given is not None and gold == given


class ChoiceAnswerScorer:
    """Score a multiple-choice prediction: 1.0 for the correct letter or value, else 0.0.

    The task's ``answer`` is the correct letter and its first alternative the correct option's
    value (as `flowsteer.tasks.math_qa` builds them).

    Example:
        >>> from flowsteer.tasks import Task
        >>> task = Task("m/0", "math_qa", "math", "...", "c", alternatives=("30",))
        >>> score = ChoiceAnswerScorer()
        >>> score(task, "The answer is (c)."), score(task, "Answer: 30"), score(task, "a")
        (1.0, 1.0, 0.0)
    """

    def __call__(self, task: Task, prediction: str | None) -> float:
        """1.0 if the prediction names the correct option, by letter or by value."""
        if prediction is None:
            return 0.0
        if not isinstance(prediction, str):
            raise TypeError(f"prediction must be a str or None, got {type(prediction).__name__}")
        gold = task.answer.strip().lower()
        value = task.alternatives[0] if task.alternatives else None
        answers = [a for a in (extract_final_answer(prediction), prediction.strip()) if a]
        for answer in answers:
            letter = chosen_letter(answer)
            if letter is not None:
                return float(letter == gold)
        return float(value is not None and any(same_value(value, a) for a in answers))
