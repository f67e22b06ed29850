"""APPS answer scorer: pass@1 over the problem's hidden cases, each run alone in the sandbox.

Every case is one sandboxed run with its own timeout (``case_timeout``); the first case that
fails ends the scoring (pass@1 needs all). The verdict is always decided here, in the parent,
from values the candidate cannot forge:

* **Standard input** (no ``fn_name``): the case's input is the program's real stdin, and the
  parent compares the stdout the sandbox captured with the expected output. The run must end
  normally (an exception or a timeout fails the case, even after printing the right answer); a
  ``sys.exit()``/``exit()`` is allowed, as in the official harness, since only the output counts.
* **Call-based** (``fn_name``): the program defines the function (or ``class Solution`` with that
  method, as LeetCode starter code does, instantiated when the candidate has ``class
  Solution``), calls it with the case's arguments and returns ``repr`` of the result; the parent
  reads it with `ast.literal_eval` and compares it with the expected value. The expected values
  never enter the sandbox.

Both follow the official APPS harness (``eval/testing_util.py``): the same prelude of imports
the solutions rely on (``math``, ``collections``, ``heapq``, ``numpy as np`` when installed,
...); the same lenient stdout comparison (`stdout_matches`: stripped text, line lists, floats
within ``numpy.allclose`` tolerance line by line, then lines as unordered token sets, also with
numbers rounded to 3 places); the same call-based equality (a returned tuple is a list, a
singleton-wrapped expected value, JSON's string keys read as ints). Deliberate differences: a
standard-input program runs as a script with ``__name__ == "__main__"`` and real stdin (the
official harness wraps it in a function and patches ``sys.stdin``, so ``if __name__ ==
"__main__": main()`` never ran there), and numpy values returned by a call-based solution
compare as the Python numbers or lists they hold.
"""

from __future__ import annotations

import ast
import json
import math
from typing import Any

from flowsteer.isolation.sandbox import SandboxResult, run_python, run_python_async
from flowsteer.rewards.code_answer import strip_code_fences
from flowsteer.tasks.task import Task

PRELUDE = """\
import sys, time, itertools, collections, math, fractions, random, heapq
from itertools import accumulate, product, permutations, combinations
from collections import Counter, OrderedDict, deque, defaultdict, ChainMap
from functools import lru_cache
from math import sqrt, sin, cos, tan, ceil, fabs, floor, gcd, exp, log, log2
from typing import List, Tuple
from heapq import *
try:
    import numpy as np
except ImportError:
    pass
"""

_STDIN_RUNNER = """\
def __flowsteer_main(prelude, source, exec=exec, compile=compile, SystemExit=SystemExit):
    namespace = {"__name__": "__main__"}
    exec(compile(prelude, "<prelude>", "exec"), namespace)
    try:
        exec(compile(source, "<candidate>", "exec"), namespace)
    except SystemExit:
        pass


__flowsteer_main(%r, %r)
"""

_CALL_RUNNER = """\
def __flowsteer_plain(value):
    if type(value).__module__ == "numpy" and hasattr(value, "tolist"):
        return value.tolist()
    if isinstance(value, (list, tuple)):
        return type(value)(__flowsteer_plain(item) for item in value)
    if isinstance(value, dict):
        return {__flowsteer_plain(k): __flowsteer_plain(v) for k, v in value.items()}
    return value


def __flowsteer_call(prelude, source, fn_name, arguments):
    import json
    namespace = {"__name__": "__candidate__"}
    exec(compile(prelude, "<prelude>", "exec"), namespace)
    exec(compile(source, "<candidate>", "exec"), namespace)
    args = json.loads(arguments)
    if args and isinstance(args[0], dict):  # JSON keys are strings; APPS means ints
        try:
            args = [{int(k): v for k, v in args[0].items()}]
        except ValueError:
            pass
    if "class Solution" in source:
        target = getattr(namespace["Solution"](), fn_name)
    else:
        target = namespace[fn_name]
    return repr(__flowsteer_plain(target(*args)))


__flowsteer_call(%r, %r, %r, %r)
"""


def _close(a: float, b: float) -> bool:
    """``numpy.isclose`` with its defaults (rtol 1e-5, atol 1e-8), NaN never equal."""
    if math.isinf(a) or math.isinf(b):
        return a == b
    return abs(a - b) <= 1e-8 + 1e-5 * abs(b)


def _rounded_sets(lines: list[set[str]]) -> set[frozenset[float]]:
    return {frozenset(round(float(token), 3) for token in line) for line in lines}


def stdout_matches(stdout: str, expected: str | list[str]) -> bool:
    """The official APPS comparison of a program's stdout with a case's expected output.

    Any one of these passes: the texts equal after stripping (also with every line stripped);
    the lines equal the expected lines (non-empty ones, stripped); every line is one number,
    as many as expected, each within ``numpy.allclose`` tolerance; the non-empty lines, each
    read as a set of whitespace-separated tokens, form the same set of sets (order and
    repetition ignored), also after rounding every token to 3 decimal places.

    Example:
        >>> stdout_matches("3\\n1 2 3  \\n", "3\\n1 2 3")
        True
        >>> stdout_matches("0.3333333\\n", "0.333333333"), stdout_matches("YES\\n", "NO")
        (True, False)
    """
    if isinstance(expected, list):
        expected = "\n".join(expected)
    lines = stdout.splitlines()
    if "\n".join(lines).strip() == expected.strip():
        return True
    if "\n".join(line.strip() for line in lines).strip() == expected.strip():
        return True
    want = [line.strip() for line in expected.split("\n") if line]
    got = [line for line in lines if line]
    if lines in ([expected], want) or got == want:
        return True
    try:
        got_numbers, want_numbers = [float(x) for x in got], [float(x) for x in want]
    except ValueError:
        got_numbers, want_numbers = [], [math.nan]
    if len(got_numbers) == len(want_numbers) and all(
        _close(a, b) for a, b in zip(got_numbers, want_numbers, strict=True)
    ):
        return True
    want_sets = [set(line.split()) for line in want]
    got_sets = [set(line.split()) for line in got if line.split()]
    if {frozenset(s) for s in got_sets} == {frozenset(s) for s in want_sets}:
        return True
    try:
        return _rounded_sets(got_sets) == _rounded_sets(want_sets)
    except (ValueError, OverflowError):
        return False


def _int_keys(value: Any) -> Any:
    try:
        return {int(k): v for k, v in value.items()}
    except (ValueError, TypeError):
        return value


def call_output_matches(output: Any, expected: Any) -> bool:
    """The official APPS equality of a call-based solution's return value with the expected.

    Example:
        >>> call_output_matches((1, 2), [[1, 2]]), call_output_matches(3, [4])
        (True, False)
    """
    if isinstance(output, tuple):
        output = list(output)
    if isinstance(expected, dict):
        expected = [_int_keys(expected)]
    elif isinstance(expected, list) and expected and isinstance(expected[0], dict):
        expected = [_int_keys(expected[0])]
    if output == expected:
        return True
    if isinstance(expected, list) and expected:
        if output == expected[0]:
            return True
        if isinstance(output, list) and output and isinstance(output[0], tuple):
            return [list(x) for x in output] == expected[0]
    return False


class APPSAnswerScorer:
    """Score an APPS program: 1.0 when every hidden case passes (see the module docstring).

    Args:
        case_timeout: Wall-clock seconds for one case's run, interpreter start included (the
            official harness allows 4 s of execution per case).
        memory_mb: Address-space limit of each run, in MiB.

    Example:
        >>> from flowsteer.tasks import Task
        >>> task = Task("apps/0", "apps", "code", "Print the sum of two numbers.", "",
        ...             tests=('{"input": "1 2\\\\n", "output": "3\\\\n"}',))
        >>> score = APPSAnswerScorer()
        >>> score(task, "a, b = map(int, input().split())\\nprint(a + b)")
        1.0
        >>> score(task, "print(3)"), score(task, "print(4)")
        (1.0, 0.0)
    """

    def __init__(self, case_timeout: float = 6.0, memory_mb: int = 1024) -> None:
        if not case_timeout > 0:
            raise ValueError(f"case_timeout must be positive, got {case_timeout!r}")
        if memory_mb < 64:
            raise ValueError(f"memory_mb must be >= 64, got {memory_mb!r}")
        self.case_timeout = case_timeout
        self.memory_mb = memory_mb

    def cases(self, task: Task) -> list[tuple[Any, Any]]:
        """The task's (input, expected output) pairs, from `Task.tests`' JSON documents."""
        if task.kind != "code" or not task.tests:
            raise ValueError(f"task {task.id} is not an APPS code task with test cases")
        try:
            decoded = [json.loads(test) for test in task.tests]
            return [(case["input"], case["output"]) for case in decoded]
        except (json.JSONDecodeError, TypeError, KeyError) as err:
            raise ValueError(
                f"task {task.id}: tests are not APPS cases ({{'input', 'output'}} JSON): {err}"
            ) from None

    def _source(self, task: Task, prediction: str | None) -> str | None:
        if prediction is None:
            return None
        if not isinstance(prediction, str):
            raise TypeError(f"prediction must be a str or None, got {type(prediction).__name__}")
        source = strip_code_fences(prediction, task.entry_point)
        return source if source.strip() else None

    def program(self, task: Task, source: str, case_input: Any) -> tuple[str, str | None]:
        """The sandboxed program for one case and the stdin it gets."""
        if task.entry_point is None:
            stdin = "\n".join(case_input) if isinstance(case_input, list) else str(case_input)
            return _STDIN_RUNNER % (PRELUDE, source), stdin
        arguments = json.dumps(case_input)
        return _CALL_RUNNER % (PRELUDE, source, task.entry_point, arguments), None

    def judge(self, task: Task, result: SandboxResult, expected: Any) -> bool:
        """Whether one case's run passed (decided from the captured output or value)."""
        if result.status != "ok":
            return False
        if task.entry_point is None:
            return stdout_matches(result.stdout, expected)
        if not isinstance(result.value, str):
            return False
        try:
            output = ast.literal_eval(result.value)
        except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
            return False
        return call_output_matches(output, expected)

    def __call__(self, task: Task, prediction: str | None) -> float:
        """Run the cases in order; 1.0 if all pass, 0.0 at the first that fails."""
        cases = self.cases(task)
        source = self._source(task, prediction)
        if source is None:
            return 0.0
        for case_input, expected in cases:
            program, stdin = self.program(task, source, case_input)
            result = run_python(
                program, timeout=self.case_timeout, memory_mb=self.memory_mb, stdin=stdin
            )
            if not self.judge(task, result, expected):
                return 0.0
        return 1.0

    async def score_async(self, task: Task, prediction: str | None) -> float:
        """`__call__` for asyncio callers."""
        cases = self.cases(task)
        source = self._source(task, prediction)
        if source is None:
            return 0.0
        for case_input, expected in cases:
            program, stdin = self.program(task, source, case_input)
            result = await run_python_async(
                program, timeout=self.case_timeout, memory_mb=self.memory_mb, stdin=stdin
            )
            if not self.judge(task, result, expected):
                return 0.0
        return 1.0
