"""Math answer scorer: extraction, equivalence rules, threads, bounded work."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest

from flowsteer.rewards import MathAnswerScorer, extract_final_answer, gold_answer, score_answer
from flowsteer.rewards.math_answer import last_boxed
from flowsteer.tasks import Task

SCORE = MathAnswerScorer()


def math_task(answer: str) -> Task:
    return Task("t/0", "math", "math", "question", answer)


EQUIVALENT = [
    ("1/2", "0.5"),
    ("0.5", r"\frac{1}{2}"),
    (r"\frac{1}{2}", "1/2"),
    (r"\frac{1}{2}", r"\dfrac{1}{2}"),
    ("10%", "0.1"),
    ("10", "10%"),
    ("0.1", r"10\%"),
    ("1000", "1,000"),
    ("1,000", "1000"),
    ("5", "x = 5"),
    ("18", "$18"),
    ("18", r"\$18.00"),
    ("18", "18.00"),
    ("-10", "-10"),
    ("1/3", "0.33"),
    (r"\sqrt{2}", "2^{1/2}"),
    ("x^2+2x+1", "(x+1)^2"),
    (r"\{1,2\}", r"\{2,1\}"),
    (r"\frac{\sqrt{3}}{2}", r"\frac{1}{2}\sqrt{3}"),
    ("18", "18 dollars"),
]

NOT_EQUIVALENT = [
    ("10", "0.1"),
    ("1/2", "0.6"),
    ("1/3", "0.3"),
    ("1000", "1,001"),
    ("18", "19"),
    ("5", "x = 6"),
    ("(1,2)", "(1,3)"),
    (r"\sqrt{2}", "2"),
    ("x^2+2x+1", "(x-1)^2"),
    ("0.335", "0.3"),
    ("12", "-12"),
]


@pytest.mark.parametrize(("gold", "predicted"), EQUIVALENT)
def test_equivalent_forms_match(gold: str, predicted: str) -> None:
    assert SCORE(math_task(gold), predicted) == 1.0
    assert SCORE(math_task(gold), f"Working...\nThe answer is {predicted}") == 1.0


@pytest.mark.parametrize(("gold", "predicted"), NOT_EQUIVALENT)
def test_different_answers_do_not_match(gold: str, predicted: str) -> None:
    assert SCORE(math_task(gold), predicted) == 0.0
    assert SCORE(math_task(gold), rf"so $\boxed{{{predicted}}}$") == 0.0


def test_last_boxed_matches_nested_braces() -> None:
    assert last_boxed(r"\boxed{1} then \boxed{\frac{\sqrt{3}}{2}}.") == r"\frac{\sqrt{3}}{2}"
    assert last_boxed(r"\boxed{\frac{1}{2}") is None  # unbalanced: no answer
    assert last_boxed(r"\boxed 7 done") == "7"
    assert last_boxed("no box") is None


def test_gold_from_gsm8k_and_math_solutions() -> None:
    assert gold_answer("Work <<2*3=6>>6.\n#### 1,000") == "1,000"
    assert gold_answer(r"Hence $\boxed{\left(1, \frac{3}{2}\right)}$.") == (
        r"\left(1, \frac{3}{2}\right)"
    )
    assert gold_answer(" 42 ") == "42"
    task = math_task(r"The final value is $\boxed{\frac{3}{4}}$.")
    assert SCORE(task, "0.75") == 1.0
    assert SCORE(task, "0.7") == 0.0


def test_extraction_prefers_boxed_then_final_line_then_last_number() -> None:
    assert extract_final_answer(r"The answer is 3. Actually \boxed{4}.") == "4"
    assert extract_final_answer("First 12.\nFinal answer: 7\nchecked with 9") == "7"
    assert extract_final_answer("#### 5\nthe answer is 6") == "6"  # the last marker wins
    assert extract_final_answer("We get 12 and then 15.") == "15"
    assert extract_final_answer("") is None
    assert extract_final_answer("no numbers here") is None


def test_final_answer_sentences_keep_their_first_math() -> None:
    assert (
        extract_final_answer(r"The final answer is $\frac{1}{2}$, since x > 0.") == r"\frac{1}{2}"
    )
    assert extract_final_answer("The answer is 5 apples left after giving away 3.") == "5"
    assert extract_final_answer("The answer is x = 5") == "x = 5"
    assert SCORE(math_task("3x"), "3 x") == 1.0  # a single letter is a variable, not a unit
    assert SCORE(math_task("3"), "3 x") == 0.0


def test_last_number_fallback_scores_wordy_answers() -> None:
    task = math_task("15")
    assert SCORE(task, "First 12, so in total we need 15 eggs") == 1.0
    assert SCORE(task, "We need 15 eggs and 3 boxes") == 0.0  # last number is 3


def test_missing_and_bad_predictions() -> None:
    assert SCORE(math_task("1"), None) == 0.0
    assert SCORE(math_task("1"), "") == 0.0
    assert SCORE(math_task("1"), "I don't know") == 0.0
    with pytest.raises(TypeError, match="prediction must be a str"):
        SCORE(math_task("1"), 1)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="min_rounded_decimals"):
        MathAnswerScorer(min_rounded_decimals=0)


def test_rounding_rule_is_configurable() -> None:
    strict = MathAnswerScorer(min_rounded_decimals=4)
    assert strict(math_task("1/3"), "0.33") == 0.0
    assert strict(math_task("1/3"), "0.3333") == 1.0


def test_pathological_expressions_are_bounded() -> None:
    start = time.monotonic()
    assert SCORE(math_task("2"), "10^{10^{10}}") == 0.0
    assert SCORE(math_task(r"10^{10^{10}}"), "5") == 0.0
    assert SCORE(math_task("2"), "9^{9^{9^{9}}}") == 0.0
    assert SCORE(math_task("2"), "(10^{10})!") == 0.0
    assert SCORE(math_task("2"), "x" * 10_000) == 0.0
    assert SCORE(math_task("1"), "1 " * 200_000 + "#### 1") == 1.0
    assert time.monotonic() - start < 10


def test_works_off_the_main_thread_and_under_asyncio() -> None:
    """math-verify's signal.alarm would raise here; our scorer disables it."""
    cases = [("0.5", r"\frac{1}{2}", 1.0), (r"\sqrt{2}", "2^{1/2}", 1.0), ("3", "4", 0.0)]
    results: list[float] = []
    errors: list[BaseException] = []

    def work() -> None:
        try:
            results.extend(SCORE(math_task(g), p) for g, p, _ in cases)
        except BaseException as exc:  # surfaced below
            errors.append(exc)

    thread = threading.Thread(target=work)
    thread.start()
    thread.join()
    assert not errors
    assert results == [c[2] for c in cases]

    async def main() -> list[float]:
        from flowsteer.rewards import score_answer_async

        return list(
            await asyncio.gather(*(score_answer_async(math_task(g), p) for g, p, _ in cases))
        )

    assert asyncio.run(main()) == [c[2] for c in cases]


def test_score_answer_dispatches_math() -> None:
    assert score_answer(math_task("72"), "... so 72 in all.\n#### 72") == 1.0
    assert score_answer(math_task("72"), "#### 73") == 0.0


# Program outputs (float noise, reprs), LaTeX fractions under the rounding rule, units.
PROGRAM_AND_UNIT_EQUIVALENT = [
    ("3.3", "3.3000000000000003"),
    ("0.3", "0.30000000000000004"),
    ("1.1", "1.1000000000000001"),
    ("100", "99.99999999999999"),
    ("0.5", "Fraction(1, 2)"),
    (r"\frac{1}{2}", "Fraction(1, 2)"),
    ("7", "Fraction(7, 1)"),
    ("-3/4", "Fraction(-3, 4)"),
    ("2.5", "np.float64(2.5)"),
    (r"\frac{1}{3}", "0.33"),
    (r"\dfrac{2}{3}", "0.67"),
    (r"-\frac{1}{3}", "-0.333"),
    (r"\frac12", "0.5"),
    ("25", "25 m^2"),
    ("25", r"25 \mbox{ cm}^2"),
    ("25", r"25\text{ cm}^2"),
    ("25", "25 cm^2"),
    ("25", r"25\,\text{m}^{2}"),
]
PROGRAM_AND_UNIT_DIFFERENT = [
    ("3.3", "3.31"),
    ("3.3", "3.3000000001"),
    ("0.3", "0.31"),
    ("0.5", "Fraction(1, 3)"),
    ("2", "Fraction(1, 2)"),
    (r"\frac{1}{3}", "0.3"),
    (r"\frac{1}{3}", "0.34"),
    (r"\frac{2}{3}", "0.66"),
    ("25", "26 m^2"),
    ("25", r"24 \mbox{ cm}^2"),
    ("2", "25 m^2"),
    ("3x^2", "3"),
]


@pytest.mark.parametrize(("gold", "predicted"), PROGRAM_AND_UNIT_EQUIVALENT)
def test_program_outputs_latex_fractions_and_units_match(gold: str, predicted: str) -> None:
    assert SCORE(math_task(gold), predicted) == 1.0
    assert SCORE(math_task(gold), f"Working...\nThe answer is {predicted}") == 1.0


@pytest.mark.parametrize(("gold", "predicted"), PROGRAM_AND_UNIT_DIFFERENT)
def test_program_outputs_latex_fractions_and_units_stay_apart(gold: str, predicted: str) -> None:
    assert SCORE(math_task(gold), predicted) == 0.0
    assert SCORE(math_task(gold), f"Working...\nThe answer is {predicted}") == 0.0


def test_programmer_values_are_normalised_before_voting_and_scoring() -> None:
    from fractions import Fraction

    from flowsteer.rewards.math_answer import program_answer

    assert program_answer(0.1 + 0.2) == "0.3" and program_answer(3.3000000000000003) == "3.3"
    assert program_answer(repr(Fraction(1, 2))) == "1/2" and program_answer(18.0) == "18"
    assert program_answer(1e-7 / 3) == "0.0000000333333333333"
    assert program_answer(2.5) == "2.5" and program_answer(12) == "12"


# Forms found by a second review: scientific notation, mixed numbers, spaced thousands.
MORE_EQUIVALENT = [
    ("0.001", "1e-3"),
    ("1500", "1.5e3"),
    ("1000000", "1e6"),
    ("1500", r"1.5 \times 10^3"),
    ("7/2", "3 1/2"),
    ("7/2", r"3\frac{1}{2}"),
    ("-7/2", "-3 1/2"),
    ("1000", "1 000"),
    ("12500", r"12\,500"),
    ("0.004", "0.0040"),
    ("123456789012345", "123456789012345.0"),
    ("1125899906842624", "2^{50}"),
]
# Clearly wrong answers that scored 1.0: math-verify reads "4 1" as 4 + 1 and "3 1/2" as
# (3 + 1)/2; "0.00" is 0.004 "rounded to two decimals".
MORE_DIFFERENT = [
    ("5", "4 1"),
    ("17", "12 5"),
    ("2", "3 1/2"),
    ("5", "3 5/2"),
    ("0.004", "0.00"),
    ("1/300", "0.00"),
    ("1", "1e-3"),
    ("3.3", "3.31"),
    ("1/3", "0.3"),
    ("100", "1000"),
    ("-5", "5"),
    ("12", "120"),
    # long integers are exact: only a decimal of 15+ digits is float noise
    ("123456789012345", "123456789012000"),
    ("100000000000001", "100000000000000"),
    ("1234567890123456.0", "1234567890123000"),
]


@pytest.mark.parametrize(("gold", "predicted"), MORE_EQUIVALENT)
def test_scientific_mixed_and_spaced_forms_match(gold: str, predicted: str) -> None:
    assert SCORE(math_task(gold), predicted) == 1.0
    assert SCORE(math_task(gold), rf"so the total is $\boxed{{{predicted}}}$.") == 1.0


@pytest.mark.parametrize(("gold", "predicted"), MORE_DIFFERENT)
def test_juxtaposed_numbers_and_rounded_zeros_do_not_match(gold: str, predicted: str) -> None:
    assert SCORE(math_task(gold), predicted) == 0.0
    assert SCORE(math_task(gold), rf"so the total is $\boxed{{{predicted}}}$.") == 0.0


def test_numpy_floats_come_back_as_plain_numbers() -> None:
    np = pytest.importorskip("numpy")
    from flowsteer.rewards.math_answer import program_answer

    assert program_answer(np.float64(2.5)) == "2.5"
    assert program_answer(np.float64(0.1) + np.float64(0.2)) == "0.3"
    assert program_answer(np.float64(18.0)) == "18"


@pytest.mark.parametrize(
    ("gold", "prediction", "score"),
    [
        ("5", "The answer is not 5. It is 6.", 0.0),
        ("5", "The final answer is not 5.", 0.0),
        ("5", "Answer: not 5", 0.0),
        ("6", "The answer is not 5, but 6.", 1.0),
        ("6", "The answer is not 5.5, but 6", 1.0),
        ("5", "The answer is 5, not 6.", 1.0),
    ],
)
def test_a_denied_answer_is_not_the_answer(gold: str, prediction: str, score: float) -> None:
    assert SCORE(math_task(gold), prediction) == score
