"""TriviaQA (official normalisation) and NQ-open (SQuAD's) answer scoring: tables over aliases."""

from __future__ import annotations

from pathlib import Path

import pytest

from flowsteer.rewards import TriviaQAAnswerScorer, answer_metrics, score_answer
from flowsteer.rewards.triviaqa_answer import normalize_triviaqa, triviaqa_f1
from flowsteer.tasks import Task, load_tasks

DATA = Path(__file__).parents[1] / "tasks" / "data"


@pytest.mark.parametrize(
    ("text", "normal"),
    [
        ("The Beatles", "beatles"),
        ("O'Neill", "o neill"),  # punctuation becomes a space, SQuAD would give "oneill"
        ("Sunset_Boulevard", "sunset boulevard"),
        ("‘Rock’ ´n´ `roll`", "rock n roll"),
        ("  An  Apple a day ", "apple day"),
        ("Ross Bagdasarian, Sr.", "ross bagdasarian sr"),
    ],
)
def test_triviaqa_normalisation_table(text, normal):
    assert normalize_triviaqa(text) == normal


@pytest.fixture(scope="module")
def sunset() -> Task:
    return load_tasks("triviaqa", DATA / "triviaqa.jsonl")[0]


@pytest.mark.parametrize(
    ("prediction", "em", "f1"),
    [
        ("Sunset Boulevard", 1.0, 1.0),
        ("sunset blvd.", 1.0, 1.0),  # another normalised alias
        ("Answer: West Sunset Boulevard", 1.0, 1.0),  # label stripped, longest alias
        ("The musical Sunset Boulevard", 0.0, 0.8),  # F1 against "sunset boulevard"
        ("Sunset", 0.0, 2 / 3),
        ("Cats", 0.0, 0.0),
        ("", 0.0, 0.0),
    ],
)
def test_triviaqa_em_and_f1_are_the_max_over_aliases(sunset, prediction, em, f1):
    assert score_answer(sunset, prediction) == em  # EM is the headline metric
    assert score_answer(sunset, prediction, metric="em") == em
    assert score_answer(sunset, prediction, metric="f1") == pytest.approx(f1)


def test_triviaqa_differs_from_squad_normalisation_where_the_official_script_does():
    task = Task("t/0", "triviaqa", "qa", "Who?", "O'Neill")
    squad = Task("s/0", "squad_v2", "qa", "Who?", "O'Neill")
    assert score_answer(task, "o neill") == 1.0
    assert score_answer(squad, "o neill", metric="em") == 0.0  # SQuAD deletes the apostrophe
    assert triviaqa_f1("x", "") == 0.0  # no shared token: 0 even for an empty side


def test_triviaqa_missing_prediction_scores_zero_and_bad_type_raises(sunset):
    assert TriviaQAAnswerScorer()(sunset, None) == 0.0
    with pytest.raises(TypeError, match="prediction must be a str"):
        TriviaQAAnswerScorer()(sunset, 3)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="metric"):
        TriviaQAAnswerScorer("acc")  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("prediction", "em", "f1"),
    [
        ("December 1972", 1.0, 1.0),
        ("14 December 1972 UTC", 1.0, 1.0),
        ("the 14th of December, 1972", 0.0, 2 / 3),  # max F1 over both answers
        ("1972", 0.0, 2 / 3),
        ("July 1969", 0.0, 0.0),
    ],
)
def test_nq_open_em_over_answers_and_f1_reported(prediction, em, f1):
    task = load_tasks("nq_open", DATA / "nq_open.jsonl")[1]
    assert answer_metrics(task) == ("em", "f1")
    assert score_answer(task, prediction) == em
    assert score_answer(task, prediction, metric="f1") == pytest.approx(f1)
