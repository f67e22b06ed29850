"""Code scorer: hidden tests in the real sandbox, candidate assembly, and attempts to cheat."""

from __future__ import annotations

import asyncio

import pytest

from flowsteer.rewards import CodeAnswerScorer, score_answer, strip_code_fences
from flowsteer.rewards.code_answer import build_candidate_program
from flowsteer.tasks import Task

SCORE = CodeAnswerScorer(timeout=10.0)

MBPP = Task(
    "mbpp/1", "mbpp", "code", "Write a function add(a, b).\nassert add(1, 2) == 3", "",
    tests=("assert add(1, 2) == 3", "assert add(-1, 1) == 0", "assert add(2, 2) == 4"),
    public_tests=("assert add(1, 2) == 3",), entry_point="add",
)  # fmt: skip

PROMPT = 'from typing import List\n\n\ndef total(xs: List[int]) -> int:\n    """Sum of xs."""\n'
HUMANEVAL = Task(
    "HumanEval/x", "humaneval", "code", PROMPT, "    return sum(xs)\n",
    tests=("def check(candidate):\n    assert candidate([1, 2]) == 3\n    assert candidate([]) == 0\n"
           "\ncheck(total)\n",),
    public_tests=("assert total([1, 2]) == 3",), entry_point="total",
)  # fmt: skip


def test_correct_and_wrong_mbpp_programs() -> None:
    assert SCORE(MBPP, "def add(a, b):\n    return a + b") == 1.0
    assert SCORE(MBPP, "def add(a, b):\n    return a * b if a == 2 else a + b + (a < 0)") == 0.0
    assert SCORE(MBPP, "def add(a, b):\n    return 3") == 0.0
    assert SCORE(MBPP, "def add(a, b) return a + b") == 0.0  # syntax error
    assert SCORE(MBPP, "") == 0.0
    assert SCORE(MBPP, None) == 0.0


def test_partial_credit_is_opt_in() -> None:
    one_of_three = "def add(a, b):\n    return 3"
    assert SCORE(MBPP, one_of_three) == 0.0
    assert CodeAnswerScorer(partial_credit=True)(MBPP, one_of_three) == pytest.approx(1 / 3)


def test_public_tests_never_score() -> None:
    passes_public_only = "def add(a, b):\n    return 3"
    assert SCORE(MBPP, passes_public_only) == 0.0
    hidden_only = Task(
        "m/2", "mbpp", "code", "q", "", tests=("assert f() == 1",),
        public_tests=("assert f() == 2",), entry_point="f",
    )  # fmt: skip
    assert SCORE(hidden_only, "def f():\n    return 1") == 1.0


def test_setup_code_runs_before_candidate() -> None:
    task = Task(
        "m/3", "mbpp", "code", "q", "", tests=("assert area(1) == round(PI, 2)",),
        setup_code="PI = 3.14159", entry_point="area",
    )  # fmt: skip
    assert SCORE(task, "def area(r):\n    return round(PI * r * r, 2)") == 1.0


def test_markdown_fences_are_stripped() -> None:
    answer = "Sure!\n```python\ndef add(a, b):\n    return a + b\n```\nHope it helps."
    assert SCORE(MBPP, answer) == 1.0
    two_blocks = "```\nprint('usage')\n```\n```py\ndef add(a, b):\n    return a + b\n```\n"
    assert strip_code_fences(two_blocks, "add").startswith("def add")
    assert strip_code_fences("```python\nx = 1\n") == "x = 1\n"  # unclosed fence
    assert strip_code_fences("x = 1") == "x = 1"


def test_humaneval_completion_full_program_and_unindented_body() -> None:
    assert SCORE(HUMANEVAL, HUMANEVAL.answer) == 1.0  # prompt + canonical completion
    # full program without the prompt's `from typing import List`: the prompt supplies it
    assert SCORE(HUMANEVAL, "def total(xs: List[int]) -> int:\n    return sum(xs)\n") == 1.0
    assert SCORE(HUMANEVAL, "return sum(xs)") == 1.0  # body without indentation
    assert SCORE(HUMANEVAL, "    pass\n") == 0.0
    assert SCORE(HUMANEVAL, "def total(xs):\n    return len(xs)\n") == 0.0
    program = build_candidate_program(HUMANEVAL, "return sum(xs)")
    assert program.startswith(PROMPT) and program.endswith("    return sum(xs)")


def test_main_block_of_candidate_does_not_run() -> None:
    code = "def add(a, b):\n    return a + b\n\nif __name__ == '__main__':\n    input()\n"
    assert SCORE(MBPP, code) == 1.0


@pytest.mark.parametrize(
    "cheat",
    [
        "import sys\nsys.exit(0)",
        "import os\nos._exit(0)",
        "print('[2, 2]')\nprint('passed')\nraise SystemExit",
        "import builtins\nbuiltins.exec = lambda *a, **k: None\ndef add(a, b):\n    return 0",
        "import builtins\n_c = compile\nbuiltins.compile = lambda *a, **k: _c('pass', '', 'exec')\n"
        "def add(a, b):\n    return 0",
        "def add(a, b):\n    import os\n    os._exit(0)",
        "def add(a, b):\n    raise SystemExit(0)",
    ],
)
def test_cheating_programs_score_zero(cheat: str) -> None:
    assert SCORE(MBPP, cheat) == 0.0


def test_timeouts_and_memory_are_bounded() -> None:
    scorer = CodeAnswerScorer(timeout=1.0, memory_mb=256)
    assert scorer(MBPP, "def add(a, b):\n    while True:\n        pass") == 0.0
    assert scorer(MBPP, "blob = bytearray(1 << 30)\ndef add(a, b):\n    return a + b") == 0.0
    assert scorer(MBPP, "def add(a, b):\n    return a + b") == 1.0


def test_async_scoring_matches_sync() -> None:
    async def main() -> list[float]:
        return list(
            await asyncio.gather(
                SCORE.score_async(MBPP, "def add(a, b):\n    return a + b"),
                SCORE.score_async(MBPP, "def add(a, b):\n    return 0"),
            )
        )

    assert asyncio.run(main()) == [1.0, 0.0]


def test_bad_tasks_and_options_are_clear_errors() -> None:
    with pytest.raises(ValueError, match="no hidden tests"):
        SCORE(Task("c/0", "mbpp", "code", "q", ""), "x = 1")
    with pytest.raises(ValueError, match="'math' task"):
        SCORE(Task("m/0", "gsm8k", "math", "q", "1"), "1")
    with pytest.raises(ValueError, match="timeout"):
        CodeAnswerScorer(timeout=0)
    with pytest.raises(TypeError, match="prediction must be a str"):
        SCORE(MBPP, b"def add(a, b): return a + b")  # type: ignore[arg-type]


def test_score_answer_dispatches_code() -> None:
    assert score_answer(MBPP, "def add(a, b):\n    return a + b") == 1.0


def test_rebinding_a_builtin_the_tests_use_does_not_pass_them() -> None:
    half = Task("m/9", "mbpp", "code", "Write half(x).", "", entry_point="half",
                tests=("assert abs(half(1) - 0.5) < 1e-9",))  # fmt: skip
    assert SCORE(half, "def half(x):\n    return x / 2") == 1.0
    cheat = "import builtins\nbuiltins.abs = lambda x: 0\ndef half(x):\n    return 7"
    assert SCORE(half, cheat) == 0.0
