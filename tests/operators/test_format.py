"""Format never makes a candidate worse than its input: unusable replies keep the candidate."""

from __future__ import annotations

import asyncio

import pytest

from flowsteer.llm.scripted import ScriptedBackend
from flowsteer.operators.base import WorkflowState
from flowsteer.operators.formatting import FormatOperator, defined_names
from flowsteer.rewards.code_answer import CodeAnswerScorer
from flowsteer.rewards.math_answer import MathAnswerScorer
from flowsteer.tasks.task import Task

MATH = Task("gsm8k/0", "gsm8k", "math", "Janet sells 9 eggs at $2. How much?", "18")
QA = Task("hq/0", "hotpotqa", "qa", "Who wrote Hamlet?", "William Shakespeare", context="...")
CODE = Task(
    "mbpp/1",
    "mbpp",
    "code",
    "Write sum_squares(xs): the sum of the squares of xs.",
    "",
    entry_point="sum_squares",
    tests=("assert sum_squares([1, 2]) == 5", "assert sum_squares([]) == 0"),
)
PASSING = (
    "import math\n\nSCALE = 1\n\n\ndef square(x):\n    return x * x * SCALE\n\n\n"
    "def sum_squares(xs):\n    return math.fsum(square(x) for x in xs)\n"
)


def formatted(task: Task, candidate: str, reply: str) -> str:
    out = asyncio.run(
        FormatOperator().run(
            WorkflowState(task, candidate=candidate), "Format it.", ScriptedBackend([reply])
        )
    )
    assert out.error is None
    return out.answer


@pytest.mark.parametrize(
    "reply",
    [
        "<answer></answer>",
        "<answer>  </answer>",
        "Sure! I have formatted the answer for you.",
        "I removed 2 spaces and 1 line break.",  # numbers in chatter are not an answer
        "<answer>The total she makes</answer>",
        "",
    ],
)
def test_math_format_without_a_stated_answer_keeps_the_candidate(reply):
    candidate = "9 eggs at $2 each make $18.\nFinal answer: 18"
    answer = formatted(MATH, candidate, reply)
    assert answer == "18" and MathAnswerScorer()(MATH, answer) == 1.0


@pytest.mark.parametrize(
    ("reply", "expected"),
    [
        ("<answer>18</answer>", "18"),
        ("<answer>$18.00</answer>", "18.00"),
        ("The final answer is **18**.", "18"),
        ("\\boxed{18}", "18"),
        ("18", "18"),
    ],
)
def test_math_format_uses_a_stated_answer(reply, expected):
    assert formatted(MATH, "so she makes 18 dollars a day", reply) == expected


@pytest.mark.parametrize(
    "reply",
    [
        "<answer></answer>",
        "Here is the answer in the required form:",
        "The question asks about the author of a famous play.\nIt was written long ago.",
        "I think the answer is probably the person who is usually credited with writing plays "
        "in Elizabethan London",
    ],
)
def test_qa_format_without_a_stated_answer_keeps_the_candidate(reply):
    assert formatted(QA, "William Shakespeare", reply) == "William Shakespeare"


def test_qa_format_uses_a_short_answer():
    assert formatted(QA, "It was Shakespeare, I believe.", "William Shakespeare") == (
        "William Shakespeare"
    )


@pytest.mark.parametrize(
    "reply",
    [
        # drops the helper the entry point calls
        "```python\nimport math\n\ndef sum_squares(xs):\n    return math.fsum(square(x) for x in xs)\n```",
        # drops the import and the constant
        "```python\ndef square(x):\n    return x * x * SCALE\n\ndef sum_squares(xs):\n"
        "    return math.fsum(square(x) for x in xs)\n```",
        # does not parse
        "```python\ndef square(x):\n    return x * x\n\ndef sum_squares(xs:\n    return 0\n```",
        "<answer></answer>",
        "The program is already well formatted.",
    ],
)
def test_code_format_that_loses_what_the_candidate_defined_keeps_the_candidate(reply):
    score = CodeAnswerScorer(timeout=20.0)
    assert score(CODE, PASSING) == 1.0
    answer = formatted(CODE, PASSING, reply)
    assert answer.strip() == PASSING.strip()
    assert score(CODE, answer) == 1.0


def test_code_format_that_keeps_every_definition_is_used():
    reply = "```python\n" + PASSING.replace("x * x", "x ** 2") + "\n\ndef unused():\n    pass\n```"
    answer = formatted(CODE, PASSING, reply)
    assert "x ** 2" in answer and "def unused" in answer


def test_defined_names_reads_the_top_level_bindings():
    assert defined_names(PASSING) == {"math", "SCALE", "square", "sum_squares"}
    assert defined_names("def f(:\n") is None


@pytest.mark.parametrize(
    "reply",
    [
        "<answer>19</answer>",  # a different value: Format does not solve again
        "<answer>x</answer>",
        "\\boxed{180}",
        "The final answer is 1.8",
        "<answer>-18</answer>",
    ],
)
def test_math_format_that_changes_a_stated_value_keeps_the_candidate(reply):
    candidate = "9 eggs at $2 each make $18.\nFinal answer: 18"
    assert formatted(MATH, candidate, reply) == "18"


@pytest.mark.parametrize(
    ("candidate", "reply", "expected"),
    [
        ("Final answer: 1/2", "<answer>0.5</answer>", "0.5"),
        ("Final answer: 1/3", "<answer>0.33</answer>", "0.33"),  # rounded as asked
        ("Final answer: 18.00", "<answer>18</answer>", "18"),
        ("Final answer: 10%", "<answer>0.1</answer>", "0.1"),
        ("She makes 9 times 2 dollars", "<answer>18</answer>", "18"),  # nothing stated: used
        ("Final answer: \\dfrac{\\pi}{2}", "<answer>\\frac{\\pi}{2}</answer>", "\\frac{\\pi}{2}"),
    ],
)
def test_math_format_that_keeps_the_value_is_used(candidate, reply, expected):
    assert formatted(MATH, candidate, reply) == expected


def test_math_format_that_approximates_an_exact_expression_keeps_it():
    assert formatted(MATH, "Final answer: \\sqrt{2}", "<answer>1.41</answer>") == "\\sqrt{2}"


@pytest.mark.parametrize(
    "reply",
    [
        # "rest unchanged": the helper becomes a stub
        "```python\nimport math\n\nSCALE = 1\n\ndef square(x):\n    ...  # unchanged\n\n"
        "def sum_squares(xs):\n    return math.fsum(square(x) for x in xs)\n```",
        "```python\nimport math\n\nSCALE = 1\n\ndef square(x):\n    return x * x * SCALE\n\n"
        'def sum_squares(xs):\n    """Sum of squares."""\n    pass\n```',
        "```python\nimport math\n\nSCALE = 1\n\ndef square(x):\n    return x * x * SCALE\n\n"
        "def sum_squares(xs):\n    raise NotImplementedError\n```",
    ],
)
def test_code_format_that_stubs_an_implemented_function_keeps_the_candidate(reply):
    answer = formatted(CODE, PASSING, reply)
    assert answer.strip() == PASSING.strip()
    assert CodeAnswerScorer(timeout=20.0)(CODE, answer) == 1.0


def test_code_format_without_entry_point_that_empties_a_script_keeps_it():
    task = Task("apps/1", "apps", "code", "Read two ints and print their sum.", "")
    script = "print(sum(map(int, input().split())))\n"
    assert formatted(task, script, "```python\npass\n```").strip() == script.strip()
    assert formatted(task, script, "```python\n# the same program\n...\n```").strip() == (
        script.strip()
    )


def test_a_prompt_stub_does_not_hide_a_stubbed_completion():
    prompt = 'def inc(x):\n    """Add one."""\n'
    task = Task("he/0", "humaneval", "code", prompt, "", entry_point="inc", tests=("x",))
    reply = '```python\ndef inc(x):\n    """Add one."""\n    ...\n```'
    assert formatted(task, "    return x + 1\n", reply).strip().endswith("return x + 1")


@pytest.mark.parametrize(
    "reply",
    [
        PASSING.replace("def sum_squares(xs):", "def sum_squares():"),
        PASSING.replace("def sum_squares(xs):", "def sum_squares(xs, ys):"),
        PASSING.replace("def square(x):", "def square(x, scale):"),
    ],
)
def test_code_format_that_changes_a_signature_keeps_the_candidate(reply):
    answer = formatted(CODE, PASSING, f"```python\n{reply}```")
    assert answer.strip() == PASSING.strip()


def test_code_format_may_add_annotations():
    reply = PASSING.replace("def sum_squares(xs):", "def sum_squares(xs: list[int]) -> int:")
    assert "list[int]" in formatted(CODE, PASSING, f"```python\n{reply}```")


@pytest.mark.parametrize("reply", ["I don't know", "<answer>Christopher Marlowe</answer>", "N/A"])
def test_qa_format_that_answers_something_else_keeps_the_candidate(reply):
    assert formatted(QA, "It was William Shakespeare.", reply) == "It was William Shakespeare"
    assert formatted(QA, "I think it was Shakespeare", reply) == "I think it was Shakespeare"


def test_qa_format_may_turn_an_abstaining_candidate_into_the_no_answer_phrase():
    candidate = "The passage does not say who wrote it."
    assert formatted(QA, candidate, "<answer>unanswerable</answer>") == "unanswerable"
