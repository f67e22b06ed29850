"""Run trusted tests against an untrusted candidate, in two sandboxes the candidate cannot join.

A test run in the candidate's own process can be switched off from inside it (through the
caller's frame, `gc`, rebinding builtins, a forged result line, an `__eq__` that always says
yes). So `run_hidden_tests` starts two sandboxed processes (`flowsteer.isolation.sandbox.run_with_fds`),
joined only by a pair of pipes:

* the **candidate** process runs the candidate's code, then serves requests: "call this
  function of yours with these arguments", "get this attribute", "next item", ...; it never
  sees a test, an expected value, or a verdict;
* the **judge** process runs the trusted ``setup`` and each test snippet. A name the tests use
  and do not define (the entry point, other functions or constants of the candidate) is
  fetched from the candidate once, before the tests: a value arrives decoded into fresh
  builtin values (None, bool, int, float, complex, str, bytes, list, tuple, set, frozenset,
  dict; numpy values as their ``tolist()``), anything else (functions, classes, objects) as a
  `Remote` stand-in whose every use (call, attribute, iteration, ``len``, ``bool``, item) is a
  request to the candidate, answered the same way. The test's ``==``, ``assert``,
  ``isinstance``... run in the judge on those values.

The verdict is the judge's final value, which comes back on the sandbox's private channel.

What is guaranteed (each is tested with a hostile candidate in
``tests/test_hidden_tests.py``), in the sandbox modes that give each run its own uid or PID
namespace (``"namespace+uid"``, ``"uid"``, ``"namespace"``):

* nothing the candidate does inside its process changes a verdict: its frames, `gc`,
  ``__builtins__``, builtins, ``print``, ``sys.exit``, ``os._exit``, its stdout/stderr, lines
  in any format it writes anywhere, killing its parent;
* a returned object cannot pass a comparison by its own ``__eq__``, ``__bool__`` or class: the
  judge sees only a decoded copy (subclasses of builtin types arrive as the base type) or an
  opaque `Remote` that equals only itself; the candidate may answer ``bool()``/``len()`` of its
  own objects, as it could by returning that bool or int;
* a candidate that dies, hangs, floods its output, or breaks the protocol fails every test not
  yet run (a `CandidateLost` is a BaseException: a test's ``except Exception`` cannot catch it),
  and the run fails closed on any error of the judge;
* the candidate cannot read the tests, their expected values or the judge's memory: the
  judge is another sandbox run (its own uid and/or PID namespace), and nothing but the
  arguments of its calls is ever sent to the candidate;
* a name the tests use that the trusted setup does not define, and that is not forced to be
  the candidate's (``candidate_names``), is imported by the judge itself when it names an
  importable module: a candidate's ``math`` never serves a test's ``math.isclose``.

Not guaranteed / not supported: in mode ``"process"`` (no uid drop, no PID namespace) the
candidate runs as the same user as the judge and could reach it through ``/proc`` or ptrace.
The candidate sees the arguments of its calls, so it can remember them or answer by a lookup
table; a candidate that knows the hidden tests can hard-code their answers (that is a test
suite's limit, not the harness's).
Arguments go to the candidate by value: a test that checks how the candidate mutated an
argument sees no mutation; passing a function or other object of the judge's to the candidate
fails the test. Results must fit the codec (ints up to 4300 digits, lines up to 64 MiB).

`flowsteer.rewards.code_answer.CodeAnswerScorer` is built on this; other scorers whose tests
call the candidate's functions (assert-style tests, ``check(candidate)``) can use it directly.
"""

from __future__ import annotations

import ast
import asyncio
import builtins
import functools
import marshal
import os
import sys
import threading
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from flowsteer.isolation.sandbox import SandboxResult, run_with_fds

_CHILD_SOURCE = Path(__file__).with_name("hidden_tests_child.py").read_text()
# Each side gets the shared codec plus only its own half (less to compile in every run).
_COMMON, _, _REST = _CHILD_SOURCE.partition("\n# --- the candidate's side")
_SERVE_HALF, _, _JUDGE_HALF = _REST.partition("\n# --- the judge's side")
_SERVE_SOURCE = _COMMON + "\n" + _SERVE_HALF.split("\n", 1)[1]
_JUDGE_SOURCE = _COMMON + "\n" + _JUDGE_HALF.split("\n", 1)[1]


def _preloaded(source: str, name: str) -> str:
    """Program text that defines ``source``'s functions from bytecode compiled here, once.

    Compiling the source in every run costs ~5 ms a side; the child runs the same Python
    major.minor as this process (`sandbox_capabilities` checks), so its bytecode loads as is.
    The source stays as the fallback for an interpreter of another version.
    """
    blob = marshal.dumps(compile(source, f"<{name}>", "exec"))
    version = tuple(sys.version_info[:2])
    return (
        "import marshal, sys\n"
        f"exec(marshal.loads({blob!r}) if sys.version_info[:2] == {version!r} "
        f"else compile({source!r}, {f'<{name}>'!r}, 'exec'))\n"
    )


_SERVE_PROGRAM = _preloaded(_SERVE_SOURCE, "hidden-tests serve")
_JUDGE_PROGRAM = _preloaded(_JUDGE_SOURCE, "hidden-tests judge")


@dataclass(frozen=True)
class HiddenTestReport:
    """What the hidden tests decided.

    Attributes:
        passed: One verdict per test, in order; all False when the judge did not finish.
        judge: The judge's sandbox result (its stderr names each failing test and why).
        candidate: The candidate's sandbox result (its own output and errors; never a verdict).
    """

    passed: tuple[bool, ...]
    judge: SandboxResult
    candidate: SandboxResult

    @property
    def fraction(self) -> float:
        """The share of tests that passed (0.0 when there are none)."""
        return sum(self.passed) / len(self.passed) if self.passed else 0.0


def free_names(tests: Sequence[str]) -> list[str]:
    """The names the tests read but never bind, minus Python's builtins.

    Args:
        tests: Test snippets (Python source).

    Returns:
        The names, sorted; a snippet with a syntax error contributes none (it will fail).
    """
    loaded: set[str] = set()
    bound: set[str] = set()
    for test in tests:
        try:
            tree = ast.parse(test)
        except SyntaxError:
            continue
        for node in ast.walk(tree):
            if isinstance(node, ast.Name):
                (loaded if isinstance(node.ctx, ast.Load) else bound).add(node.id)
            elif isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
                bound.add(node.name)
            elif isinstance(node, ast.arg):
                bound.add(node.arg)
            elif isinstance(node, ast.alias):
                bound.add((node.asname or node.name).split(".")[0])
            elif isinstance(node, ast.ExceptHandler) and node.name:
                bound.add(node.name)
    return sorted(loaded - bound - set(dir(builtins)))


def _programs(
    candidate: str, tests: Sequence[str], setup: str, candidate_names: Sequence[str], fds: tuple
) -> tuple[str, str]:
    request_r, request_w, reply_r, reply_w = fds
    forced = sorted(set(candidate_names))
    names = sorted(set(free_names(tests)) | set(forced))
    serve = f"{_SERVE_PROGRAM}\nserve({request_r}, {reply_w}, {candidate!r})\n"
    judge = (
        f"{_JUDGE_PROGRAM}\n"
        f"judge({reply_r}, {request_w}, {setup!r}, {list(tests)!r}, {names!r}, {forced!r})\n"
    )
    return serve, judge


def _verdicts(judge: SandboxResult, count: int) -> tuple[bool, ...]:
    value = judge.value
    ok = judge.status == "ok" and isinstance(value, list) and len(value) == count
    if not ok or not all(isinstance(v, bool) for v in value):
        return (False,) * count
    return tuple(value)


def run_hidden_tests(
    candidate: str,
    tests: Sequence[str],
    *,
    setup: str = "",
    candidate_names: Sequence[str] = (),
    timeout: float = 10.0,
    memory_mb: int = 512,
) -> HiddenTestReport:
    """Run ``tests`` in a trusted judge process against ``candidate`` in its own sandbox.

    Args:
        candidate: The untrusted code; it runs with ``__name__ == "__candidate__"``.
        tests: Trusted test snippets, run in order in one namespace; a snippet passes when it
            runs to its end without an exception.
        setup: Trusted code run in the judge before the tests (e.g. a task's setup code, a
            HumanEval prompt whose helpers the tests call); the candidate runs its own copy.
        candidate_names: Names that are always the candidate's even where ``setup`` defines
            them (the entry point, which a prompt defines as a stub).
        timeout: Wall-clock seconds for each of the two processes.
        memory_mb: Memory limit of each of the two processes (see `run_python`).

    Returns:
        The per-test verdicts and both sandbox results.

    Example:
        >>> report = run_hidden_tests(
        ...     "def add(a, b):\\n    return a - b\\n",
        ...     ["assert add(2, 0) == 2", "assert add(1, 2) == 3"],
        ...     candidate_names=["add"],
        ... )
        >>> report.passed
        (True, False)
        >>> print(report.judge.stderr.strip())
        [hidden test 1] AssertionError:
    """
    request_r, request_w = os.pipe()
    reply_r, reply_w = os.pipe()
    fds = (request_r, request_w, reply_r, reply_w)
    serve, judge = _programs(candidate, tests, setup, candidate_names, fds)
    box: list[SandboxResult] = []
    limits = {"timeout": timeout, "memory_mb": memory_mb}
    # A thread of its own (not a pool slot): a judge must never wait on a queued candidate.
    thread = threading.Thread(
        target=lambda: box.append(run_with_fds(serve, (request_r, reply_w), **limits)),
        name="hidden-tests-candidate",
        daemon=True,
    )
    thread.start()
    judged = run_with_fds(judge, (reply_r, request_w), **limits)
    thread.join()
    return HiddenTestReport(_verdicts(judged, len(tests)), judged, box[0])


_executor: ThreadPoolExecutor | None = None
_executor_lock = threading.Lock()


def _pool() -> ThreadPoolExecutor:
    global _executor
    with _executor_lock:
        if _executor is None:
            _executor = ThreadPoolExecutor(max_workers=32, thread_name_prefix="hidden-tests")
        return _executor


async def run_hidden_tests_async(
    candidate: str,
    tests: Sequence[str],
    *,
    setup: str = "",
    candidate_names: Sequence[str] = (),
    timeout: float = 10.0,
    memory_mb: int = 512,
) -> HiddenTestReport:
    """`run_hidden_tests` for asyncio callers; up to 32 candidates are judged at once.

    Args:
        candidate: See `run_hidden_tests`.
        tests: See `run_hidden_tests`.
        setup: See `run_hidden_tests`.
        candidate_names: See `run_hidden_tests`.
        timeout: See `run_hidden_tests`.
        memory_mb: See `run_hidden_tests`.

    Returns:
        See `run_hidden_tests`.
    """
    call = functools.partial(
        run_hidden_tests,
        candidate,
        tests,
        setup=setup,
        candidate_names=candidate_names,
        timeout=timeout,
        memory_mb=memory_mb,
    )
    return await asyncio.get_running_loop().run_in_executor(_pool(), call)
