"""QA answer scorer: token F1 / exact match as the official SQuAD v2 evaluation defines them.

`normalize_answer`, `exact_match` and `token_f1` follow ``evaluate-v2.0.py`` line for line:
lowercase, drop every ``string.punctuation`` character, drop the articles a/an/the as whole
words, collapse whitespace; F1 is over the multiset of tokens shared by gold and prediction, and
when either side normalises to no tokens F1 is 1 if both do, else 0. The score of a prediction is
the maximum over all gold alternatives (``task.golds``).

Two choices the official script does not have to make, because its inputs are spans:

* **Unanswerable questions** (SQuAD v2, gold ``""``): the official script scores 1 only for an
  empty prediction. A workflow answers in words, so an explicit abstention also scores 1: a
  prediction that normalises to one of ``no_answer_phrases`` ("unanswerable", "no answer",
  "cannot be answered", ...). Anything else scores 0. Conversely an abstention on an
  answerable question scores 0 (no token overlap), so abstaining is never a free reward.
* **An answer label**: a leading ``Answer:`` / ``Final answer:`` label is removed before
  normalising (``strip_answer_label``), since a Format operator may keep it and the label is
  not part of the span.
"""

from __future__ import annotations

import collections
import re
import string
from typing import Literal

from flowsteer.tasks.task import Task

_ARTICLES_RE = re.compile(r"\b(a|an|the)\b", re.UNICODE)
_PUNCTUATION = frozenset(string.punctuation)
_LABEL_RE = re.compile(r"^\s*[*_]*(?:final\s+)?answer[*_]*\s*[:：]\s*", re.IGNORECASE)

DEFAULT_NO_ANSWER_PHRASES: tuple[str, ...] = (
    "unanswerable",
    "no answer",
    "not answerable",
    "cannot be answered",
    "can not be answered",
    "cannot answer",
    "question is unanswerable",
    "no answer found",
    "none",
    "n/a",
    "unknown",
)


def normalize_answer(text: str) -> str:
    """SQuAD's normalisation: lowercase, no punctuation, no articles, single spaces.

    Example:
        >>> normalize_answer("The  Denver Broncos!")
        'denver broncos'
    """
    text = text.lower()
    text = "".join(ch for ch in text if ch not in _PUNCTUATION)
    text = _ARTICLES_RE.sub(" ", text)
    return " ".join(text.split())


def exact_match(gold: str, prediction: str) -> float:
    """1.0 if both normalise to the same string, else 0.0 (SQuAD ``compute_exact``).

    Example:
        >>> exact_match("the Broncos", "Broncos.")
        1.0
    """
    return float(normalize_answer(gold) == normalize_answer(prediction))


def token_f1(gold: str, prediction: str) -> float:
    """Token-multiset F1 (SQuAD ``compute_f1``); if either side has no tokens, their EM.

    Example:
        >>> token_f1("Denver Broncos", "the Broncos won")
        0.5
        >>> token_f1("", "")
        1.0
    """
    gold_tokens = normalize_answer(gold).split()
    pred_tokens = normalize_answer(prediction).split()
    if not gold_tokens or not pred_tokens:
        return float(gold_tokens == pred_tokens)
    common = collections.Counter(gold_tokens) & collections.Counter(pred_tokens)
    same = sum(common.values())
    if same == 0:
        return 0.0
    precision = same / len(pred_tokens)
    recall = same / len(gold_tokens)
    return 2 * precision * recall / (precision + recall)


class QAAnswerScorer:
    """Score a QA prediction by token F1 (or exact match), maximum over the gold alternatives.

    Args:
        metric: ``"f1"`` (the paper's QA reward) or ``"em"``.
        no_answer_phrases: Predictions that count as abstaining on an unanswerable question,
            compared after `normalize_answer`; an empty prediction always counts.
        strip_answer_label: Remove a leading ``Answer:`` / ``Final answer:`` label first.

    Example:
        >>> from flowsteer.tasks import Task
        >>> task = Task("q/0", "squad_v2", "qa", "Who won?", "Denver Broncos",
        ...             alternatives=("Broncos",))
        >>> QAAnswerScorer()(task, "Answer: the Broncos")
        1.0
        >>> unanswerable = Task("q/1", "squad_v2", "qa", "Who lost?", "")
        >>> QAAnswerScorer()(unanswerable, "Unanswerable."), QAAnswerScorer()(unanswerable, "Bob")
        (1.0, 0.0)
    """

    def __init__(
        self,
        metric: Literal["f1", "em"] = "f1",
        no_answer_phrases: tuple[str, ...] = DEFAULT_NO_ANSWER_PHRASES,
        strip_answer_label: bool = True,
    ) -> None:
        if metric not in ("f1", "em"):
            raise ValueError(f"metric must be 'f1' or 'em', got {metric!r}")
        self.metric = metric
        self.no_answer_phrases = tuple(no_answer_phrases)
        self._no_answer = frozenset(normalize_answer(p) for p in no_answer_phrases) | {""}
        self.strip_answer_label = strip_answer_label

    def __call__(self, task: Task, prediction: str | None) -> float:
        """The best F1 (or EM) of ``prediction`` against any of ``task.golds``."""
        if prediction is None:
            prediction = ""
        if not isinstance(prediction, str):
            raise TypeError(f"prediction must be a str or None, got {type(prediction).__name__}")
        if self.strip_answer_label:
            prediction = _LABEL_RE.sub("", prediction, count=1)
        answerable = [g for g in task.golds if normalize_answer(g)]
        if not answerable:  # SQuAD v2 unanswerable: abstaining is the right answer
            return 1.0 if normalize_answer(prediction) in self._no_answer else 0.0
        compare = token_f1 if self.metric == "f1" else exact_match
        return max(compare(gold, prediction) for gold in answerable)
