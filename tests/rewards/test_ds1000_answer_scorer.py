"""DS-1000 scoring with each problem's own harness in the sandbox, and skipped problems."""

from __future__ import annotations

import asyncio
import dataclasses
import importlib.util
from pathlib import Path

import pytest

from flowsteer.rewards import AnswerSkipped, DS1000AnswerScorer, score_answer, score_answer_async
from flowsteer.rewards.ds1000_answer import imported_modules, postprocess
from flowsteer.tasks import load_tasks

DATA = Path(__file__).parents[1] / "tasks" / "data"
TASKS = {t.id: t for t in load_tasks("ds1000", DATA / "ds1000.jsonl")}

pytest.importorskip("pandas", reason="DS-1000 tests need the eval extra (pandas, numpy)")

WRONG = {
    "ds1000/0": "result = df.iloc[sorted(List)]\n",  # ignores the order asked for
    "ds1000/291": "result = a.mean(axis=0)\n",  # column means, not row means
    "ds1000/150": "    return s.value_counts()\n",  # ordered by count, not by value
}


@pytest.mark.parametrize("task_id", sorted(WRONG))
def test_reference_passes_and_wrong_solution_fails(task_id):
    task = TASKS[task_id]
    assert score_answer(task, task.answer) == 1.0
    assert score_answer(task, WRONG[task_id]) == 0.0


def test_test_string_rejects_a_loop_that_computes_the_right_result():
    task = TASKS["ds1000/291"]
    loop = "result = np.array([sum(row) / len(row) for row in a])\n"
    assert score_answer(task, loop) == 0.0
    assert score_answer(task, "```python\nresult = np.mean(a, axis=1)\n```") == 1.0


def test_function_problem_takes_the_body_as_written():
    task = TASKS["ds1000/150"]
    assert score_answer(task, "<code>\n    return s.value_counts().sort_index()\n</code>") == 1.0
    unindented = "return s.value_counts().sort_index()\n"
    assert score_answer(task, unindented) == 0.0  # the official harness does not re-indent


def test_exiting_early_or_printing_cannot_pass():
    task = TASKS["ds1000/0"]
    assert score_answer(task, "import os\nos._exit(0)\n") == 0.0
    assert score_answer(task, "import sys\nsys.exit(0)\n") == 0.0
    assert score_answer(task, "print('passed')\nresult = df\n") == 0.0
    assert score_answer(task, None) == 0.0 and score_answer(task, "```python\n```") == 0.0


def test_a_problem_whose_library_is_missing_is_skipped_whatever_the_answer():
    task = TASKS["ds1000/0"]
    harness = task.tests[0].replace("import copy\n", "import copy\nimport flowsteer_no_such_lib\n")
    missing = dataclasses.replace(task, id="ds1000/x", tests=(harness,))
    scorer = DS1000AnswerScorer()
    for prediction in (task.answer, "result = 0", None):
        with pytest.raises(AnswerSkipped) as info:
            scorer(missing, prediction)
        assert info.value.task_id == "ds1000/x"
        assert (
            "flowsteer_no_such_lib" in info.value.reason
            and "ModuleNotFoundError" in info.value.reason
        )
    assert scorer(task, task.answer) == 1.0  # the other problems still run


@pytest.mark.skipif(
    importlib.util.find_spec("tensorflow") is not None, reason="tensorflow is installed here"
)
def test_tensorflow_problem_is_skipped_with_the_reason():
    with pytest.raises(AnswerSkipped, match="cannot import tensorflow"):
        score_answer(TASKS["ds1000/666"], "result = tf.reduce_sum(x)")


def test_a_candidate_cannot_turn_its_failure_into_a_skip():
    task = TASKS["ds1000/291"]
    raising = "raise ModuleNotFoundError(\"No module named 'numpy'\")\n"
    assert score_answer(task, raising) == 0.0


def test_async_twin_gives_the_same_scores():
    task = TASKS["ds1000/291"]

    async def both():
        return await asyncio.gather(
            score_answer_async(task, task.answer), score_answer_async(task, WRONG[task.id])
        )

    assert asyncio.run(both()) == [1.0, 0.0]


@pytest.mark.parametrize(
    ("raw", "code"),
    [
        ("result = a.T", "result = a.T"),
        ("Sure!\n```python\nresult = a.T\n```\nThat transposes it.", "result = a.T\n"),
        ("<code>\nresult = a.T\n</code>", "\nresult = a.T\n"),
        ("result = a.T\nEND SOLUTION\n</code>\nprint(result)", "result = a.T"),
        ("    return s.sum()\n", "    return s.sum()\n"),
    ],
)
def test_postprocess_table(raw, code):
    assert postprocess(raw) == code


def test_imported_modules_include_the_exec_context_and_ignore_prose():
    harness = TASKS["ds1000/291"].tests[0]
    assert imported_modules(harness) == ("numpy", "copy", "tokenize", "io")
    assert imported_modules("import scipy.stats as ss, os.path\n") == ("scipy", "os")
    assert imported_modules("from here we go\n    from scipy.stats import norm\n") == ("scipy",)


def test_the_eval_extra_imports_inside_the_sandbox():
    names = ["numpy", "pandas", "scipy", "sklearn", "matplotlib"]
    absent = [name for name in names if importlib.util.find_spec(name) is None]
    if absent:
        pytest.skip(f"the eval extra is not installed here (missing {absent})")
    task = TASKS["ds1000/291"]
    imports = "".join(f"import {name}\n" for name in names) + "import matplotlib.pyplot\n"
    every_library = dataclasses.replace(task, tests=(imports + task.tests[0],))
    assert score_answer(every_library, task.answer) == 1.0
