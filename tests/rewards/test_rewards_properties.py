"""Property tests: the text scorers never crash on arbitrary model output and stay in [0, 1]."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from flowsteer.rewards import MathAnswerScorer, QAAnswerScorer, token_f1
from flowsteer.tasks import Task

TOKENS = [*"0123456789+-*/^=.,%$\\{}()[] xyabc\n", "\\frac", "\\boxed", "\\sqrt", "####"]
MATHY = st.lists(st.sampled_from(TOKENS), max_size=40).map("".join)


@settings(max_examples=300, deadline=None)
@given(gold=st.one_of(MATHY, st.text(max_size=20)), prediction=st.one_of(MATHY, st.text()))
def test_math_scorer_is_total(gold: str, prediction: str) -> None:
    score = MathAnswerScorer()(Task("t", "math", "math", "q", gold), prediction)
    assert score in (0.0, 1.0)


@settings(max_examples=100, deadline=None)
@given(number=st.integers(-(10**12), 10**12))
def test_math_scorer_integers_match_exactly(number: int) -> None:
    task = Task("t", "gsm8k", "math", "q", str(number))
    assert MathAnswerScorer()(task, f"so\n#### {number:,}") == 1.0
    assert MathAnswerScorer()(task, f"so\n#### {number + 1}") == 0.0


@settings(max_examples=300, deadline=None)
@given(golds=st.lists(st.text(max_size=30), min_size=1, max_size=3), prediction=st.text())
def test_qa_scores_stay_in_unit_interval(golds: list[str], prediction: str) -> None:
    task = Task("q", "squad_v2", "qa", "q", golds[0], alternatives=tuple(golds[1:]))
    assert 0.0 <= QAAnswerScorer()(task, prediction) <= 1.0
    assert token_f1(golds[0], prediction) == token_f1(prediction, golds[0])
