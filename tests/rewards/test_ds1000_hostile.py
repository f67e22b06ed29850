"""DS-1000 verdicts come from a judge process: hostile candidates cannot forge a pass.

Each candidate here passed the old harness, which compared results inside the candidate's own
process; the judge (`flowsteer.isolation.hidden_tests` plus `flowsteer.rewards.ds1000_codec`) rejects
them. The codec's decoder is also tested directly (in this process, no sandbox) on values a
hostile encoder could send.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from flowsteer.rewards import score_answer
from flowsteer.rewards.ds1000_answer import judged_outside
from flowsteer.tasks import load_tasks
from flowsteer.tasks.ds1000 import parse_ds1000

np = pytest.importorskip("numpy", reason="DS-1000 tests need the eval extra (numpy, pandas)")
pd = pytest.importorskip("pandas", reason="DS-1000 tests need the eval extra (numpy, pandas)")

from flowsteer.rewards.ds1000_codec import Unjudgeable, decode, encode  # noqa: E402

DATA = Path(__file__).parents[1] / "tasks" / "data"
TASKS = {t.id: t for t in load_tasks("ds1000", DATA / "ds1000.jsonl")}

# A real-shaped problem whose exec_test is a bare ``==``: the shape an __eq__ lie attacks.
EQUALITY_CONTEXT = '''\
import numpy as np
import copy


def generate_test_case(test_case_id):
    def define_test_input(test_case_id):
        return np.array([[1, 2], [3, 4]]) * test_case_id

    def generate_ans(data):
        return int(data.sum())

    test_input = define_test_input(test_case_id)
    expected_result = generate_ans(copy.deepcopy(test_input))
    return test_input, expected_result


def exec_test(result, ans):
    return result == ans


exec_context = r"""
import numpy as np
a = test_input
[insert]
"""


def test_execution(solution: str):
    code = exec_context.replace("[insert]", solution)
    for i in range(2):
        test_input, expected_result = generate_test_case(i + 1)
        test_env = {"test_input": test_input}
        exec(code, test_env)
        assert exec_test(test_env["result"], expected_result)
'''
EQUALITY = parse_ds1000(
    {
        "prompt": "Problem:\nSum every element of the array a.\nA:\n<code>\nimport numpy as np\n"
        "a = np.array([[1, 2], [3, 4]])\n</code>\nresult = ... # put solution in this variable\n"
        "BEGIN SOLUTION\n<code>\n",
        "reference_code": "result = int(a.sum())\n",
        "code_context": EQUALITY_CONTEXT,
        "metadata": {"library": "Numpy", "problem_id": 9001, "perturbation_type": "Origin"},
    },
    "ds1000/9001",
)

STEAL_EXPECTED = "import sys\nresult = sys._getframe(1).f_locals['expected_result']\n"
REBIND_EXEC_TEST = (
    "import sys\nsys._getframe(1).f_globals['exec_test'] = lambda *a: 1\nresult = 0\n"
)
PATCH_PANDAS = (
    "import pandas as pd\npd.testing.assert_frame_equal = lambda *a, **k: None\nresult = df\n"
)
PATCH_NUMPY = "import numpy as np\nnp.testing.assert_allclose = lambda *a, **k: None\nresult = 0\n"
EQ_LIE = "class Yes:\n    def __eq__(self, other):\n        return True\nresult = Yes()\n"
FLOAT_LIE = "class F(float):\n    def __eq__(self, other):\n        return True\nresult = F(0)\n"
# Rebinds the codec's array encoder in the candidate's process (through the server's frame)
# to send a node of its own making for ``result = np.int64(0)``.
_REBIND = (
    "import sys\nimport numpy as np\n"
    "codec = sys._getframe(1).f_locals['encode'].__globals__\n"
    "codec['_array'] = lambda v: ['nd', %r, [], %s]\n"
    "result = np.int64(0)\n"
)
REBOUND_ENCODER = _REBIND % ("<i8", "int(a.sum()).to_bytes(8, 'little')")  # what it computed
FORGED_ENCODING = _REBIND % ("|O", "bytes(8)")  # an object-dtype array: a pointer


def test_the_references_pass_through_the_judge():
    assert judged_outside(EQUALITY) and judged_outside(TASKS["ds1000/0"])
    assert score_answer(EQUALITY, EQUALITY.answer) == 1.0
    assert score_answer(EQUALITY, "result = a.sum()") == 1.0  # numpy int: compares by value


@pytest.mark.slow
def test_a_rebound_encoder_only_sends_what_its_code_computed():
    assert score_answer(EQUALITY, REBOUND_ENCODER) == 1.0  # the rebinding reaches the codec
    assert score_answer(EQUALITY, FORGED_ENCODING) == 0.0  # ...and a forged node is refused


@pytest.mark.parametrize(
    ("task_id", "candidate"),
    [("ds1000/0", STEAL_EXPECTED), ("ds1000/0", PATCH_PANDAS), ("ds1000/9001", EQ_LIE)],
)
def test_hostile_candidates_fail(task_id, candidate):
    task = EQUALITY if task_id == "ds1000/9001" else TASKS[task_id]
    assert score_answer(task, candidate) == 0.0


@pytest.mark.slow
@pytest.mark.parametrize(
    ("task_id", "candidate"),
    [
        ("ds1000/291", REBIND_EXEC_TEST),
        ("ds1000/291", PATCH_NUMPY),
        ("ds1000/9001", FLOAT_LIE),
        ("ds1000/9001", STEAL_EXPECTED),
        ("ds1000/9001", "import os\nos._exit(0)\n"),
        ("ds1000/9001", FORGED_ENCODING),
    ],
)
def test_more_hostile_candidates_fail(task_id, candidate):
    task = EQUALITY if task_id == "ds1000/9001" else TASKS[task_id]
    assert score_answer(task, candidate) == 0.0


def test_only_matplotlib_problems_run_in_one_process():
    task = TASKS["ds1000/291"]
    plot = "import matplotlib.pyplot as plt\n" + task.tests[0]
    assert judged_outside(task) and not judged_outside(dataclasses.replace(task, tests=(plot,)))


# --------------------------------------------------------------------------- the codec


@pytest.mark.parametrize(
    "value",
    [
        pd.DataFrame({"a": [1, 2], "b": ["x", None], "c": [1.5, np.nan]}, index=[3, 1]),
        pd.Series(pd.Categorical(["a", "b", "a"], ordered=True), name="c"),
        pd.Series(pd.date_range("2020-03-28", periods=3, tz="Europe/Paris")),
        pd.Series([1, None], dtype="Int64"),
        pd.DataFrame({"v": [1, 2]}, index=pd.MultiIndex.from_tuples([("a", 1), ("b", 2)])),
    ],
)
def test_pandas_values_round_trip_exactly(value):
    back = decode(encode(value))
    if isinstance(value, pd.DataFrame):
        pd.testing.assert_frame_equal(back, value)
    else:
        pd.testing.assert_series_equal(back, value)


def test_arrays_scalars_and_indexes_round_trip_with_their_types():
    index = pd.date_range("2020-01-01", periods=3, freq="D")
    back = decode(encode(index))
    pd.testing.assert_index_equal(back, index)
    assert back.freq == index.freq
    for value in (np.arange(6).reshape(2, 3).T, np.array(["ab", "c"]), np.float32(2.5)):
        out = decode(encode(value))
        assert type(out) is type(value) and out.dtype == value.dtype
        np.testing.assert_array_equal(out, value)
    objects = decode(encode(np.array([1, "a", None], dtype=object)))
    assert objects.dtype == object and objects.tolist() == [1, "a", None]
    assert decode(encode([1, (2, 3), {"k": {4}}])) == [1, (2, 3), {"k": {4}}]
    stats = pytest.importorskip("scipy.stats")
    test = stats.ttest_ind([1.0, 2.0, 3.0], [2.0, 4.0, 7.0])
    assert type(decode(encode(test))) is tuple and decode(encode(test)) == test


@pytest.mark.parametrize(
    "node",
    [
        ["nd", "|O", [1], b"\0" * 8],  # an object dtype would hold pointers
        ["nd", "V8", [1], b"\0" * 8],  # void
        ["nd", "i4,f8", [1], b"\0" * 12],  # structured
        ["nd", "<i8", [3], b"\0" * 8],  # bytes do not match the shape
        ["nd", "<i8", [-1], b""],
        ["series", ["ext", "interval[int64]", []], ["range", 0, 0, 1, ["py", None]], ["py", None]],
        ["sparse", "spmatrix_evil", [1, 1], ["py", 0], ["py", 0], ["py", 0]],
        ["frame", ["range", 0, 2, 1, ["py", None]], ["range", 0, 1, 1, ["py", None]], []],
        ["pickle", b"cos\nsystem\n"],
        "not a node",
    ],
)
def test_the_decoder_rejects_malformed_or_dangerous_values(node):
    with pytest.raises((ValueError, TypeError)):
        decode(node)


def test_unknown_types_decode_to_values_that_fail_every_test():
    value = decode(encode(pd.DataFrame({"a": [1]}).groupby("a")))
    assert isinstance(value, Unjudgeable)
    with pytest.raises(TypeError):
        assert value == value
    with pytest.raises(TypeError):
        bool(value)
