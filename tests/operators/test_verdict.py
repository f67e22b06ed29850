"""The verdict parser on realistic checker phrasings, both ways (and a few with no verdict)."""

from __future__ import annotations

import pytest

from flowsteer.operators.parsing import parse_verdict

PASSES = [
    "No issues found. The answer is correct.",
    "Correct.\nNo errors.",
    "<verdict>no errors found</verdict>",
    "<verdict>PASS</verdict>",
    "PASS",
    "**PASS**",
    "Verdict: correct",
    "Final verdict - PASS. The computation 9*2=18 checks out.",
    "I found no errors.",
    "I could not find any mistakes in the reasoning.",
    "There are no problems with this solution.",
    "The answer is not wrong.",
    "The answer isn't incorrect; it just skips a step.",
    "Yes, the candidate is right.",
    "Looks good to me. The answer is correct.",
    "Everything checks out.",
    "The solution is valid and the final answer 18 matches my own.",
    "My answer is 18, which matches the candidate. <verdict>pass</verdict>",
    "Nothing wrong with it.",
    "Step 2 looked wrong at first, but on rechecking the answer is correct.",
    "Errors: none\nThe program handles every case.",
    "The code is error-free and returns the expected values.",
    "Conclusion: the candidate's answer is accurate.",
    "Is the answer correct? Yes.",
    "I verified each step; no mistakes were made.",
    "The candidate correctly computes 9 * 2 = 18.",
    "18 is the correct answer.",
    "All public tests pass.",
    "There's nothing to correct here.",
    "Yep, that's right.",
    "There are no errors in the logic and the answer should be accepted.",
]
FAILS = [
    "not correct",
    "No, this is incorrect.",
    "No. The candidate forgot the tax.",
    "FAIL: the sum in step 2 is wrong.",
    "FAIL",
    "Verdict: incorrect",
    "Verdict: The answer is not correct.",
    "There is an error in step 2.",
    "The answer is wrong; 9 times 2 is 18, not 17.",
    "The candidate's answer 17 is incorrect. The correct answer is 18.",
    "<verdict>FAIL</verdict> the total is off by one",
    "<verdict>not correct</verdict>",
    "The answer is correct, but there is an error in step 2.",
    "I don't think this is right.",
    "The final answer does not match my own (I get 18).",
    "The program fails on the empty list.",
    "The reasoning is flawed: it adds instead of multiplying.",
    "Is the answer correct? No.",
    "**Incorrect.** The units are wrong.",
    "Result - rejected: the function never returns.",
    "The solution has a mistake in the loop bound.",
    "This is not the right answer.",
    "The candidate is invalid because it ignores the discount.",
    "Wrong. Recompute the product.",
    "This answer cannot be correct.",
    "Partially correct: the units are missing.",
    "The answer should be 18, not 17.",
    "The candidate forgot to subtract the discount.",
    "Needs correction in step 3.",
    "Nope.",
    "There are no errors in the logic, but the final answer is wrong.",
]
UNCLEAR = ["Hmm, I cannot tell.", "Looks plausible I guess.", "", "I am not sure."]


def test_the_table_is_large_and_covers_both_ways():
    assert len(PASSES) + len(FAILS) >= 40 and min(len(PASSES), len(FAILS)) >= 20


@pytest.mark.parametrize("text", PASSES)
def test_passing_phrasings_pass(text):
    assert parse_verdict(text) is True


@pytest.mark.parametrize("text", FAILS)
def test_failing_phrasings_fail(text):
    assert parse_verdict(text) is False


@pytest.mark.parametrize("text", UNCLEAR)
def test_text_without_a_verdict_has_none(text):
    assert parse_verdict(text) is None


@pytest.mark.parametrize(
    "text",
    ["Correct answer: 18. The candidate wrote 17.", "The right value would be 18; I get 17."],
)
def test_naming_another_answer_is_no_pass(text):
    assert parse_verdict(text) is not True


def test_an_explicit_verdict_outranks_the_prose_around_it():
    assert parse_verdict("The answer looks wrong at first.\n<verdict>PASS</verdict>") is True
    assert parse_verdict("Everything is correct.\nVerdict: FAIL (units)") is False
    assert parse_verdict("I think the answer is correct.\nFAIL: step 3 divides by zero") is False
