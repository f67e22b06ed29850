"""QA scorer: SQuAD v2 normalisation, F1/EM, gold alternatives, unanswerable questions."""

from __future__ import annotations

import pytest

from flowsteer.rewards import QAAnswerScorer, exact_match, normalize_answer, score_answer, token_f1
from flowsteer.tasks import Task


def qa_task(answer: str, *alternatives: str) -> Task:
    return Task("q/0", "squad_v2", "qa", "question", answer, alternatives=alternatives)


@pytest.mark.parametrize(
    ("text", "normalised"),
    [
        ("The Denver Broncos!", "denver broncos"),
        ("  an   apple, a pear  ", "apple pear"),
        ("Theatre", "theatre"),  # "the" only as a whole word
        ("U.S.A.", "usa"),
        ("rock-'n'-roll", "rocknroll"),
        ("", ""),
        ("the a an", ""),
    ],
)
def test_normalisation_matches_official_script(text: str, normalised: str) -> None:
    assert normalize_answer(text) == normalised


def test_f1_and_em_values() -> None:
    assert token_f1("Denver Broncos", "Denver Broncos") == 1.0
    assert token_f1("Denver Broncos", "the Broncos won") == pytest.approx(0.5)
    assert token_f1("w x y z", "w x") == pytest.approx(2 * 1.0 * 0.5 / 1.5)
    assert token_f1("new york new york", "new york") == pytest.approx(2 / 3)  # multiset
    assert token_f1("cat", "dog") == 0.0
    assert token_f1("the", "") == 1.0  # both empty after normalisation
    assert token_f1("cat", "the") == 0.0
    assert exact_match("The Broncos.", "broncos") == 1.0
    assert exact_match("Broncos", "Denver Broncos") == 0.0


def test_max_over_gold_alternatives() -> None:
    task = qa_task("Denver Broncos", "Broncos", "the Denver Broncos team")
    scorer = QAAnswerScorer()
    assert scorer(task, "Broncos") == 1.0
    assert scorer(task, "Broncos team") == pytest.approx(0.8)  # best: "denver broncos team"
    assert QAAnswerScorer(metric="em")(task, "Broncos team") == 0.0
    assert QAAnswerScorer(metric="em")(task, "broncos") == 1.0


def test_answer_label_is_stripped_only_when_asked() -> None:
    task = qa_task("Paris")
    assert QAAnswerScorer()(task, "Final answer: Paris") == 1.0
    assert QAAnswerScorer(strip_answer_label=False)(task, "Answer: Paris") == pytest.approx(2 / 3)


@pytest.mark.parametrize("abstain", ["", "   ", "Unanswerable.", "no answer", "N/A", "unknown"])
def test_unanswerable_rewards_abstaining(abstain: str) -> None:
    assert QAAnswerScorer()(qa_task(""), abstain) == 1.0


def test_unanswerable_rejects_guesses_and_abstaining_is_not_free() -> None:
    scorer = QAAnswerScorer()
    assert scorer(qa_task(""), "Denver Broncos") == 0.0
    assert scorer(qa_task(""), "the answer is unanswerable because") == 0.0
    assert scorer(qa_task("Denver Broncos"), "unanswerable") == 0.0
    assert scorer(qa_task("Denver Broncos"), "") == 0.0
    assert QAAnswerScorer(no_answer_phrases=())(qa_task(""), "unanswerable") == 0.0
    assert QAAnswerScorer(no_answer_phrases=())(qa_task(""), None) == 1.0


def test_bad_input_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match="metric"):
        QAAnswerScorer(metric="bleu")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="prediction must be a str"):
        QAAnswerScorer()(qa_task("x"), ["x"])  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="must be a flowsteer"):
        score_answer({"kind": "qa"}, "x")  # type: ignore[arg-type]


def test_score_answer_dispatches_qa() -> None:
    assert score_answer(qa_task("Ada Lovelace"), "Lovelace") == pytest.approx(2 / 3)
