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
    [
        "Correct answer: 18. The candidate wrote 17.",
        "The right value would be 18; I get 17.",
        "The candidate's answer, 17, is one less than the correct 18.",
        "Unfortunately, the answer is 17, whereas the correct value is 18.",
    ],
)
def test_naming_another_answer_is_no_pass(text):
    assert parse_verdict(text) is not True


def test_an_explicit_verdict_outranks_the_prose_around_it():
    assert parse_verdict("The answer looks wrong at first.\n<verdict>PASS</verdict>") is True
    assert parse_verdict("Everything is correct.\nVerdict: FAIL (units)") is False
    assert parse_verdict("I think the answer is correct.\nFAIL: step 3 divides by zero") is False


# A second table, written against the parser after the first fixes: long reviews, markdown,
# JSON, symbols, quoted question text, per-step notes before a conclusion, negated beliefs.
MORE_PASSES = [
    "Step 1 is fine. Step 2 is fine.\n\nThe final answer of 14 is correct.",
    "**Verdict:** PASS",
    "✅ Correct",
    "Correct ✓",
    "✓",
    "Status: ✅",
    "Verdict: ✅",
    "Everything checks out.",
    "No mistakes were made.",
    "I don't see any problems with this solution.",
    "The answer 42 is right.",
    '{"verdict": "pass"}',
    '{"verdict": "PASS", "explanation": "All steps correct."}',
    '```json\n{"is_correct": true}\n```',
    "Result: PASS",
    "LGTM!",
    "This is not incorrect",
    "Minor issue: the explanation skips a step. Otherwise correct.",
    "PASS - minor issues with formatting only",
    "Verdict: PASS (minor issues with the wording)",
    "The question asks which statement is correct. The candidate picked B. That is the right choice.",
    "Question: 'Mark answered 3 questions incorrectly out of 20. How many did he answer correctly?'"
    "\nCandidate: 17.\n20-3=17. Verified.",
    'The problem says "each wrong answer loses a point and the test is failed below 10". '
    "The candidate's total of 65 is right.",
    "Answer verified.",
    "Verified.",
    "Confirmed: the answer is 42.",
    "I confirm the answer.",
    "All good.",
    "No corrections needed.",
    "No changes needed.",
    "The final answer does not need any changes.",
    "The answer is correct.\n\nNo further changes needed.",
    "I don't think the answer is wrong.",
    "I do not think there are any errors.",
    "There's nothing wrong with the answer.",
    "Not only is the method correct, the final answer is also right.",
    "I've reviewed the solution carefully.\n\n**Analysis:**\n- The setup is correct.\n"
    "- The arithmetic is correct.\n- The final answer matches.\n\n**Verdict:** The solution is correct.",
    "There is an arithmetic error in step 3, but it does not affect the final answer, which is correct.",
    "Wrong approach but the answer happens to be correct.",
    "The candidate made an error in step 2 but corrected it in step 3. The final answer is right.",
    "Expected: 12\nGot: 12\nPASS",
    "Is the answer correct? Yes, it is.",
    "👍",
    "The answer is **correct**.",
    "None of the steps contain errors.",
    "None of the calculations are wrong.",
    "Neither of the steps is wrong.",
    "There isn't a single error.",
    "I didn't find an error.",
    "I did not find a single issue with the solution.",
    "Agreed.",
    "0 errors found.",
    "Errors found: 0",
    "Problems found: None",
    "The method is correct and all steps are fine.",
    "I have no objections.",
    "Spot on.",
    "The candidate is correct: 9 * 2 = 18, not 17 as one might think.",
    "Correct - though the explanation could be shorter.",
    "My own answer: <answer>18</answer>. The candidate says 18, which matches.",
]
MORE_FAILS = [
    "Let me check step by step.\n\nStep 1: 3*4 = 12. Correct.\nStep 2: 12+1 = 13. This is wrong, "
    "it should be 12+2=14.\n\nOverall, the final answer is incorrect.",
    "Step 1: 3*4 = 12.\nCorrect.\nStep 2: 12+1 = 13, but the problem says add 2.\n"
    "So the final answer 13 is wrong.",
    "Yes, step 1 is right.\nNo issue in step 2.\nBut step 3 divides by 3 instead of 4, "
    "so the final answer is wrong.",
    "Result: 3*4 = 12, correct.\nResult of step 2: 14, correct.\n"
    "However, the answer should be 15 because the question asks for one more.",
    "Checking each step:\n1. 3*4=12 - correct\n2. 12+2=14 - correct\n\nHowever the question asks "
    "for the difference, not the sum. The final answer is incorrect.",
    "**Verdict**: FAIL",
    "**FAIL** — the answer should be 12",
    "FAIL - the answer is otherwise correct but the units are missing",
    "❌ Incorrect",
    "Verdict: ❌",
    "✗",
    "👎",
    "The solution is correct, but the final answer should be 12 instead of 13",
    "Incorrect. The correct answer is 5.",
    "wrong",
    '{"verdict": "fail", "reason": "arithmetic"}',
    '{"verdict": "FAIL", "explanation": "Step 2 is correct but final answer is wrong"}',
    '```json\n{"is_correct": false, "reason": "off by one"}\n```',
    "Result: FAIL",
    "VERDICT = FAIL",
    "needs revision",
    "I don't think the answer is correct.",
    "I'm not sure the answer is correct.",
    "This answer is neither correct nor complete.",
    "Unverified.",
    "Cannot confirm; the answer appears wrong.",
    "The candidate's answer (13) does not match my computation (14).",
    "The approach is valid but there is an arithmetic error in step 3.",
    "It is correct that 3+4=7, but the final answer of 8 is wrong.",
    "Correct approach, wrong answer.",
    "Almost correct, but the sign is flipped.",
    "The question says 'Tom got 3 questions wrong'. The candidate used 4 instead, so the answer is wrong.",
    "The answer is correct.\n\nVerdict: FAIL",
    "No. The answer should be 12.\nVerdict: FAIL",
    "The solution correctly adds but incorrectly multiplies.",
    "2 of 5 tests fail.",
    "Expected: 12\nGot: 13\nFAIL",
    # emphasis inside a negation
    "The answer is *not* correct.",
    "The answer is **not** correct.",
    "The answer is _not_ correct.",
    "The answer *isn't* right.",
    # praise of a part does not outrank a verdict on the answer
    "The final answer 8 is wrong. However, the method is correct.",
    "The answer is not correct, but the method is fine.",
    "Step 2 is wrong. Step 3 is fine.",
    "None of the steps are correct.",
    "No match.",
    # restricted, counterfactual and attributed passes
    "Correct except for the final step, which gives 17 instead of 18.",
    "Everything is correct except the final answer.",
    "All steps are right except step 3.",
    "The result is correct for the first part only.",
    "It would be correct if the rate were 3, but the rate is 2.",
    "The candidate claims the answer is correct, but it isn't.",
    "The candidate is correct only if we ignore the tax, which we cannot. So no.",
    "The answer is incorrect. Everything else checks out.",
]


def test_the_second_table_is_large_and_covers_both_ways():
    assert min(len(MORE_PASSES), len(MORE_FAILS)) >= 30


@pytest.mark.parametrize("text", MORE_PASSES)
def test_more_passing_phrasings_pass(text):
    assert parse_verdict(text) is True


@pytest.mark.parametrize("text", MORE_FAILS)
def test_more_failing_phrasings_fail(text):
    assert parse_verdict(text) is False


def test_per_step_notes_do_not_outrank_the_conclusion():
    review = (
        "Step 1: 12. Correct.\nStep 2: 13.\nCorrect.\nStep 3 drops the tax, so the answer is wrong."
    )
    assert parse_verdict(review) is False
    assert parse_verdict(review.replace("wrong", "right")) is True


def test_quoted_question_text_is_not_the_checker_speaking():
    quoted = 'The question: "Which of these answers is incorrect and why was it marked wrong." '
    assert parse_verdict(quoted + "The candidate's answer is right.") is True
    assert parse_verdict(quoted + "I verified it.") is True


def test_a_checker_quoting_its_own_verdict_is_still_read():
    assert parse_verdict('My verdict: "The answer is correct and complete."') is True
    assert parse_verdict('I conclude: "the final answer is wrong here".') is False
