"""MathQA choice accuracy (letter or the option's value) and AIME integer equality: tables."""

from __future__ import annotations

from pathlib import Path

import pytest

from flowsteer.rewards import ChoiceAnswerScorer, IntegerAnswerScorer, answer_metrics, score_answer
from flowsteer.rewards.choice_answer import chosen_letter, same_value
from flowsteer.tasks import Task, load_tasks

DATA = Path(__file__).parents[1] / "tasks" / "data"


@pytest.fixture(scope="module")
def math_qa() -> list[Task]:
    return load_tasks("math_qa", DATA / "math_qa.jsonl")


@pytest.mark.parametrize(
    ("index", "prediction", "score"),
    [
        (0, "a", 1.0),
        (0, "A", 1.0),
        (0, "(a)", 1.0),
        (0, "The answer is (a).", 1.0),
        (0, "Answer: a ) rs . 400", 1.0),
        (0, "option a", 1.0),
        (0, "\\boxed{A}", 1.0),
        (0, "Rs. 400", 1.0),  # the correct option's value, without a letter
        (0, "400", 1.0),
        (0, "b", 0.0),
        (0, "(b) rs . 400", 0.0),  # a letter wins over a value
        (0, "300", 0.0),  # another option's value
        (0, "I cannot tell", 0.0),
        (1, "d", 1.0),
        (1, "So there are 240 students.", 1.0),
        (1, "1200", 0.0),
        (1, "e", 0.0),
        (2, "b ) 270", 1.0),
        (2, "270 pages", 1.0),
        (2, "2.70", 0.0),
        (2, "", 0.0),
    ],
)
def test_math_qa_scores_the_letter_or_the_option_value(math_qa, index, prediction, score):
    assert score_answer(math_qa[index], prediction) == score


def test_math_qa_metrics_and_missing_prediction(math_qa):
    assert answer_metrics(math_qa[0]) == ("accuracy",)
    assert ChoiceAnswerScorer()(math_qa[0], None) == 0.0


@pytest.mark.parametrize(
    ("answer", "letter"),
    [("c", "c"), ("(C) 27.675", "c"), ("d.", "d"), ("choice: e", "e"), ("f", None),
     ("a train", None), ("27.675", None)],
)  # fmt: skip
def test_chosen_letter_table(answer, letter):
    assert chosen_letter(answer) == letter


@pytest.mark.parametrize(
    ("option", "answer", "same"),
    [
        ("5 : 3", "5:3", True),
        ("1 / 3", "1/3", True),
        ("12 %", "12%", True),
        ("$ 1200", "1,200", True),
        ("4 km / hr", "4", True),
        ("data inadequate", "Data inadequate", True),
        ("27.675", "27.68", False),
        ("1 : 2", "1", False),  # two numbers: only the whole text can match
        ("none of these", "", False),
    ],
)
def test_same_value_table(option, answer, same):
    assert same_value(option, answer) is same


@pytest.mark.parametrize(
    ("prediction", "score"),
    [
        ("70", 1.0),
        ("\\boxed{70}", 1.0),
        ("The sum of the bases is $70$.", 1.0),
        ("Final answer: 070", 1.0),
        ("70.0", 1.0),
        ("69", 0.0),
        ("70.5", 0.0),
        ("\\frac{140}{2}", 0.0),  # integer equality, not symbolic equivalence
        ("70%", 0.0),
        ("seventy", 0.0),
        ("", 0.0),
        (None, 0.0),
    ],
)
def test_aime_integer_equality_table(prediction, score):
    task = load_tasks("aime", DATA / "aime.jsonl")[0]
    assert answer_metrics(task) == ("accuracy",)
    assert score_answer(task, prediction) == score


def test_integer_scorer_rejects_non_strings():
    with pytest.raises(TypeError, match="prediction must be a str"):
        IntegerAnswerScorer()(Task("aime/0", "aime", "math", "p", "1"), 1)  # type: ignore[arg-type]
