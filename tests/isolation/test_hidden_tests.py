"""Hidden tests against hostile candidates: one test per attack, real sandboxes throughout.

Every cheat below is a WRONG solution that tries to pass anyway; each scored 1.0 with the
single-process harness this replaced (the candidate could reach the tests from inside)."""

from __future__ import annotations

import os

import pytest

from flowsteer.isolation.hidden_tests import free_names, run_hidden_tests
from flowsteer.isolation.sandbox import sandbox_capabilities
from flowsteer.rewards import CodeAnswerScorer
from flowsteer.tasks import Task

SCORE = CodeAnswerScorer(timeout=10.0)
CAPS = sandbox_capabilities()
separated = pytest.mark.skipif(
    not (CAPS.drop_uid or CAPS.namespaces),
    reason=f"mode {CAPS.mode!r}: candidate and judge share a uid and /proc ({CAPS.notes})",
)


def mbpp(*tests: str, entry: str = "add") -> Task:
    return Task("m/x", "mbpp", "code", "Write it.", "", tests=tests, entry_point=entry)


ADD = mbpp("assert add(1, 2) == 3", "assert add(-1, 1) == 0", "assert add(2, 2) == 4")
WRONG_ADD = "def add(a, b):\n    return 0\n"
PROMPT = 'def total(xs):\n    """Sum of xs."""\n'
CHECK = Task(
    "h/x", "humaneval", "code", PROMPT, "", entry_point="total",
    tests=("def check(candidate):\n    assert candidate([1, 2]) == 3\n"
           "    assert candidate([]) == 0\n\ncheck(total)\n",),
)  # fmt: skip

# Each neutralises the tests it can find, then defines a wrong `add`; in the old single-process
# harness the tests were reachable this way.
FRAME_ATTACK = """
import sys
frame = sys._getframe()
while frame is not None:
    tests = frame.f_locals.get('tests')
    if isinstance(tests, list):
        tests[:] = ['pass'] * len(tests)
    frame = frame.f_back
"""
INSPECT_ATTACK = FRAME_ATTACK.replace("import sys\nframe = sys._getframe()", "import inspect\n"
                                      "frame = inspect.currentframe()")  # fmt: skip
GC_ATTACK = """
import gc
for obj in gc.get_objects():
    if isinstance(obj, list) and obj and all(isinstance(s, str) and 'assert' in s for s in obj):
        for holder in gc.get_referrers(obj):
            pass
        obj[:] = ['pass'] * len(obj)
"""
# Finds the runner's nonce and private channel up the stack, forges "all passed" and exits.
FORGE_ATTACK = """
import os, sys
frame = sys._getframe()
while frame is not None:
    names = frame.f_locals
    if 'nonce' in names and 'ctl_fd' in names:
        total = 3
        for fd in range(3, 64):
            for line in ('%s ok [%d, %d]\\n' % (names['nonce'], total, total),
                         '%s ok [True, True, True]\\n' % names['nonce'], '["ready"]\\n'):
                try:
                    os.write(fd, line.encode())
                except OSError:
                    pass
        os._exit(0)
    frame = frame.f_back
"""


@pytest.mark.parametrize(
    "attack", [FRAME_ATTACK, INSPECT_ATTACK, GC_ATTACK, FORGE_ATTACK],
    ids=["caller-frame", "inspect-frame", "gc-objects-referrers", "forged-result-line"],
)  # fmt: skip
def test_reaching_the_tests_from_the_candidate_does_not_pass_them(attack: str) -> None:
    assert SCORE(ADD, attack + WRONG_ADD) == 0.0


def test_a_candidate_that_only_looks_around_still_passes_when_right() -> None:
    for attack in (FRAME_ATTACK, GC_ATTACK):
        assert SCORE(ADD, attack + "def add(a, b):\n    return a + b\n") == 1.0


def test_frame_attack_on_a_check_style_test() -> None:
    assert SCORE(CHECK, FRAME_ATTACK + "def total(xs):\n    return 7\n") == 0.0
    assert SCORE(CHECK, "def total(xs):\n    return sum(xs)\n") == 1.0


def test_replacing_the_candidates_builtins_does_not_reach_the_tests() -> None:
    half = mbpp("assert abs(half(1) - 0.5) < 1e-9", entry="half")
    cheat = (
        "import builtins\n"
        "__builtins__ = dict(vars(builtins), abs=lambda x: 0)\n"
        "def half(x):\n    return 7\n"
    )
    assert SCORE(half, cheat) == 0.0


@pytest.mark.parametrize(
    ("test", "lie"),
    [
        ("assert abs(f(1) - 0.5) < 1e-9", "abs = lambda x: 0"),
        ("assert isinstance(f(1), str)", "isinstance = lambda *a: True"),
        ("assert bool(f(1)) is True", "bool = lambda *a: True"),
        ("assert len(f(1)) == 3", "len = lambda x: 3"),
        ("assert sorted(f(1)) == [1, 2]", "sorted = lambda *a, **k: [1, 2]"),
    ],
)
def test_rebinding_builtins_while_the_tests_run_does_not_pass_them(test: str, lie: str) -> None:
    # The first call returns the right value and rebinds the builtin for the tests after it.
    task = mbpp("assert f(0) == 0", test, entry="f")
    cheat = f"import builtins\ndef f(x):\n    builtins.{lie}\n    return 0\n"
    assert SCORE(task, cheat) == 0.0


@pytest.mark.parametrize(
    "cheat",
    [
        "import sys\nprint('[True, True, True]')\nsys.exit(0)",
        "import os\nprint('[3, 3]', flush=True)\nos._exit(0)",
        "import builtins, sys\nbuiltins.print = lambda *a, **k: None\nsys.exit = lambda *a: None\n"
        "def add(a, b):\n    sys.exit(0)\n    return 0",
        "import sys\nsys.stdout.write('[hidden test 0] passed\\n' * 3)\n"
        "sys.stderr.write('ok [3, 3]\\n')\ndef add(a, b):\n    return 0",
        "def add(a, b):\n    import os\n    os._exit(0)",
        "def add(a, b):\n    raise SystemExit(0)",
    ],
    ids=[
        "sys-exit",
        "os-exit",
        "patched-print-and-exit",
        "printed-markers",
        "exit-in-call",
        "systemexit-in-call",
    ],
)
def test_exiting_printing_and_markers_do_not_pass(cheat: str) -> None:
    assert SCORE(ADD, cheat) == 0.0


@pytest.mark.parametrize(
    "returned",
    [
        "class Yes:\n    def __eq__(self, other):\n        return True\n    __hash__ = None\n",
        "class Yes(int):\n    def __eq__(self, other):\n        return True\n",
        "class Yes(list):\n    def __eq__(self, other):\n        return True\n",
        "class Yes(str):\n    def __eq__(self, other):\n        return True\n"
        "    def __ne__(self, other):\n        return False\n",
    ],
    ids=["object", "int-subclass", "list-subclass", "str-subclass"],
)
def test_returned_objects_that_equal_everything_do_not_pass(returned: str) -> None:
    assert SCORE(ADD, returned + "def add(a, b):\n    return Yes()\n") == 0.0
    assert SCORE(CHECK, returned + "def total(xs):\n    return Yes()\n") == 0.0


def test_a_candidates_module_never_serves_the_tests() -> None:
    task = mbpp("assert math.isclose(half(1), 0.5)", entry="half")  # `math` not imported
    assert SCORE(task, "import math\ndef half(x):\n    return x / 2\n") == 1.0
    cheat = "import math\nmath.isclose = lambda *a, **k: True\ndef half(x):\n    return 7\n"
    assert SCORE(task, cheat) == 0.0


def test_a_dying_candidate_cannot_be_caught_as_an_expected_exception() -> None:
    task = mbpp(
        "try:\n    f(-1)\nexcept Exception:\n    pass\nelse:\n    raise AssertionError('no raise')",
        entry="f",
    )
    assert SCORE(task, "def f(x):\n    raise ValueError('negative')\n") == 1.0
    assert SCORE(task, "def f(x):\n    import os\n    os._exit(0)\n") == 0.0
    assert SCORE(task, "def f(x):\n    import os, signal\n    os.kill(os.getpid(), 9)\n") == 0.0


@separated
def test_killing_every_process_it_can_see_does_not_pass() -> None:
    cheat = (
        "import os, signal\n"
        "for pid in [os.getppid()] + [int(p) for p in os.listdir('/proc') if p.isdigit()]:\n"
        "    if pid != os.getpid():\n"
        "        try:\n"
        "            os.kill(pid, signal.SIGKILL)\n"
        "        except OSError:\n"
        "            pass\n"
        "def add(a, b):\n    return 0\n"
    )
    assert SCORE(ADD, cheat) == 0.0
    assert SCORE(ADD, "def add(a, b):\n    return a + b\n") == 1.0


@separated
def test_the_candidate_cannot_read_the_tests_or_expected_values() -> None:
    secret = "expected-7f3a9c"
    spy = (
        "import os\n"
        "def peek():\n"
        "    found = []\n"
        "    for pid in [p for p in os.listdir('/proc') if p.isdigit()]:\n"
        "        for name in ('cmdline', 'environ'):\n"
        "            try:\n"
        "                found.append(open(f'/proc/{pid}/{name}', 'rb').read())\n"
        "            except OSError:\n"
        "                pass\n"
        "        try:\n"
        "            for fd in os.listdir(f'/proc/{pid}/fd'):\n"
        "                try:\n"
        "                    found.append(open(f'/proc/{pid}/fd/{fd}', 'rb').read(1 << 20))\n"
        "                except OSError:\n"
        "                    pass\n"
        "        except OSError:\n"
        "            pass\n"
        "    return b''.join(found).decode('latin-1')\n"
    )
    report = run_hidden_tests(spy, [f"assert {secret!r} not in peek()"], timeout=10.0)
    assert report.passed == (True,), report.judge.stderr


def test_honest_candidates_keep_their_objects_generators_and_exceptions() -> None:
    candidate = (
        "class Pair:\n"
        "    def __init__(self, a, b):\n        self.a, self.b = a, b\n"
        "    def total(self):\n        return self.a + self.b\n"
        "def count(n):\n    yield from range(n)\n"
        "def pair(a, b):\n    return Pair(a, b)\n"
        "def fail():\n    raise KeyError('k')\n"
        "def data():\n    return (1, [2.5, None], {'k': {3}}, b'x', frozenset({1}), 1j, -0.0)\n"
        "LIMIT = 10\n"
    )
    tests = [
        "p = pair(1, 2)\nassert p.a == 1 and p.total() == 3 and p == p and p != pair(1, 2)",
        "assert list(count(3)) == [0, 1, 2] and sum(count(4)) == 6",
        "try:\n    fail()\nexcept KeyError:\n    pass\nelse:\n    raise AssertionError",
        "assert data() == (1, [2.5, None], {'k': {3}}, b'x', frozenset({1}), 1j, -0.0)",
        "assert type(data()[0]) is int and data() != [1]",
        "assert Pair(5, 6).total() == 11",
        "assert LIMIT == 10 and type(LIMIT) is int",  # a constant of the candidate's
    ]
    report = run_hidden_tests(candidate, tests, timeout=10.0)
    assert report.passed == (True,) * len(tests), report.judge.stderr


def test_failures_are_reported_per_test_with_a_reason() -> None:
    report = run_hidden_tests(
        "def f(x):\n    return x\n", ["assert f(1) == 1", "assert f(2) == 3", "assert g(1)"]
    )
    assert report.passed == (True, False, False)
    assert "[hidden test 1] AssertionError" in report.judge.stderr
    assert "[hidden test 2] NameError" in report.judge.stderr
    broken = run_hidden_tests("def f(:\n", ["assert f(1) == 1"])
    assert broken.passed == (False,) and "SyntaxError" in broken.judge.stderr


def test_free_names_are_what_the_tests_read_and_never_bind() -> None:
    tests = [
        "def check(candidate):\n    import math\n    assert candidate(1) == helper(x)\n"
        "check(total)\n",
        "for i in range(3):\n    assert add(i, y) == [j for j in (i,)][0]\n",
        "try:\n    boom()\nexcept ValueError as err:\n    print(err)\n",
    ]
    assert free_names(tests) == ["add", "boom", "helper", "total", "x", "y"]


@pytest.mark.parametrize(
    "cheat",
    [
        "import sys\nsys.stdout.write('x' * (4 << 20))\ndef add(a, b):\n    return a + b\n",
        "def add(a, b):\n    while True:\n        pass\n",
        "import os\nfor fd in range(3, 32):\n    try:\n        os.write(fd, b'[\"ok\", 3]\\n{garbage\\n')\n"
        "    except OSError:\n        pass\ndef add(a, b):\n    return a + b\n",
    ],
    ids=["output-flood", "hang", "protocol-garbage"],
)
def test_flooding_hanging_or_garbling_the_channel_fails_closed(cheat: str) -> None:
    assert CodeAnswerScorer(timeout=2.0)(ADD, cheat) == 0.0


def test_numpy_results_arrive_as_their_values() -> None:
    numpy_dir = os.path.dirname(os.path.dirname(__import__("numpy").__file__))
    if numpy_dir not in CAPS.site_paths:
        pytest.skip("numpy is not importable inside the sandbox here")
    candidate = (
        "import numpy as np\ndef f():\n    return np.int64(4)\ndef g():\n    return np.arange(3)\n"
    )
    tests = ["assert f() == 4 and type(f()) is int", "assert g() == [0, 1, 2]"]
    assert run_hidden_tests(candidate, tests, timeout=10.0).passed == (True, True)


def test_the_precompiled_programs_fall_back_to_source_on_another_python() -> None:
    import sys

    from flowsteer.isolation import hidden_tests
    from flowsteer.isolation.sandbox import run_python

    version = repr(tuple(sys.version_info[:2]))
    for program, name in ((hidden_tests._SERVE_PROGRAM, "serve"),
                          (hidden_tests._JUDGE_PROGRAM, "judge")):  # fmt: skip
        assert version in program
        other = program.replace(version, "(2, 7)", 1)
        result = run_python(f"{other}\ncallable({name})", timeout=10)
        assert (result.status, result.value) == ("ok", True), result.stderr
