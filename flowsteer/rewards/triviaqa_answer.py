"""TriviaQA answer scorer: exact match and token F1 as the official TriviaQA script defines them.

The official normalisation (``triviaqa_evaluation.py``) differs from SQuAD's in two ways: an
underscore is a space, and punctuation (``string.punctuation`` plus the quotes ``‘ ’ ´ ```) is
replaced by a space instead of being deleted, so ``"o'neill"`` becomes ``o neill``; then
lowercase, the articles a/an/the dropped as words, whitespace collapsed. A prediction's score is
the maximum over the golds (the value and the normalised aliases); F1 with no shared token is 0,
also for an empty side. As for the other QA sources, a leading ``Answer:`` label is removed from
the prediction first (a Format operator may keep it).
"""

from __future__ import annotations

import collections
import re
import string
from typing import Literal

from flowsteer.tasks.task import Task

_PUNCTUATION = frozenset(string.punctuation + "‘’´`")
_ARTICLES_RE = re.compile(r"\b(a|an|the)\b")
_LABEL_RE = re.compile(r"^\s*[*_]*(?:final\s+)?answer[*_]*\s*[:：]\s*", re.IGNORECASE)


def normalize_triviaqa(text: str) -> str:
    """TriviaQA's official answer normalisation.

    Example:
        >>> normalize_triviaqa("The O'Neill_Cup!")
        'o neill cup'
    """
    text = text.replace("_", " ").lower()
    text = "".join(" " if ch in _PUNCTUATION else ch for ch in text)
    text = _ARTICLES_RE.sub(" ", text)
    return " ".join(text.split())


def triviaqa_exact_match(gold: str, prediction: str) -> float:
    """1.0 if both normalise to the same string.

    Example:
        >>> triviaqa_exact_match("Sir Edmund Hillary", "sir edmund hillary.")
        1.0
    """
    return float(normalize_triviaqa(gold) == normalize_triviaqa(prediction))


def triviaqa_f1(gold: str, prediction: str) -> float:
    """Token-multiset F1 after TriviaQA normalisation; 0.0 when no token is shared.

    Example:
        >>> triviaqa_f1("Edmund Hillary", "Hillary")
        0.6666666666666666
    """
    gold_tokens = normalize_triviaqa(gold).split()
    pred_tokens = normalize_triviaqa(prediction).split()
    same = sum((collections.Counter(gold_tokens) & collections.Counter(pred_tokens)).values())
    if same == 0:
        return 0.0
    precision, recall = same / len(pred_tokens), same / len(gold_tokens)
    return 2 * precision * recall / (precision + recall)


class TriviaQAAnswerScorer:
    """Score a TriviaQA prediction by EM or token F1, maximum over the golds.

    Args:
        metric: ``"em"`` (the headline number) or ``"f1"``.
        strip_answer_label: Remove a leading ``Answer:`` / ``Final answer:`` label first.

    Example:
        >>> from flowsteer.tasks import Task
        >>> task = Task("t/0", "triviaqa", "qa", "Who first climbed Everest?", "Edmund Hillary",
        ...             alternatives=("sir edmund hillary", "hillary"))
        >>> TriviaQAAnswerScorer()(task, "Answer: Hillary"), TriviaQAAnswerScorer()(task, "Tenzing")
        (1.0, 0.0)
    """

    def __init__(self, metric: Literal["em", "f1"] = "em", strip_answer_label: bool = True) -> None:
        if metric not in ("em", "f1"):
            raise ValueError(f"metric must be 'em' or 'f1', got {metric!r}")
        self.metric = metric
        self.strip_answer_label = strip_answer_label

    def __call__(self, task: Task, prediction: str | None) -> float:
        """The best EM (or F1) of ``prediction`` against any of ``task.golds``."""
        if prediction is None:
            return 0.0
        if not isinstance(prediction, str):
            raise TypeError(f"prediction must be a str or None, got {type(prediction).__name__}")
        if self.strip_answer_label:
            prediction = _LABEL_RE.sub("", prediction, count=1)
        compare = triviaqa_exact_match if self.metric == "em" else triviaqa_f1
        return max(compare(gold, prediction) for gold in task.golds)
