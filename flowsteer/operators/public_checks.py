"""What the Programmer and Test operators run of an APPS or DS-1000 candidate before scoring.

Code tasks come in three shapes, told apart as the answer scorer tells them (by
``task.source``, `task_shape`):

* ``"asserts"`` (HumanEval, MBPP, a user's code tasks): the program defines
  ``task.entry_point`` and ``task.public_tests`` are assert snippets; `ProgrammerOperator`
  checks that it loads, `TestOperator` runs the asserts (their own modules keep that logic).
* ``"apps"``: ``task.public_tests`` are the statement's own examples as APPS cases
  (`flowsteer.tasks.apps`); `check_apps` runs the candidate on each exactly as the scorer runs
  a hidden case (real stdin for a standard-input program, a call of ``fn_name`` for a
  call-based one, the official lenient comparison) and reports each mismatch with the input,
  the expected and the actual output. Hidden cases are never run here.
* ``"ds1000"``: ``task.public_tests`` holds the problem's error-only check
  (`flowsteer.tasks.ds1000.ds1000_check_program`); `check_ds1000` runs the candidate inside the
  problem's own ``code_context`` on its first generated input and reports an exception or a
  missing ``result``. It never compares with the expected result, so a check that passes says
  only "runs", never "correct".

A `PublicCheck` is feedback for the model, not a verdict the reward trusts: the candidate runs
in one sandboxed process and could forge its own check.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from flowsteer.isolation.sandbox import SandboxResult, run_python_async
from flowsteer.rewards.apps_answer import APPSAnswerScorer
from flowsteer.rewards.ds1000_answer import postprocess

if TYPE_CHECKING:
    from flowsteer.operators.base import OperatorSettings
    from flowsteer.tasks.task import Task

TaskShape = Literal["asserts", "apps", "ds1000"]

DS1000_MIN_TIMEOUT_S = 30.0
"""A DS-1000 check gets at least this long: importing pandas/scipy alone takes seconds."""
DS1000_MIN_MEMORY_MB = 4096
"""...and at least this much address space (pandas, scipy and scikit-learn need ~1 GiB)."""

_EXCEPTION_LINE_RE = re.compile(r"^(?:[\w.]+\.)?([A-Z]\w*(?:Error|Exception|Exit|Interrupt)\b.*)$")
_SHOWN = 160  # characters of an input or output quoted in feedback


@dataclass(frozen=True)
class PublicCheck:
    """The outcome of running a candidate on what the problem shows.

    Attributes:
        passed: It ran without error and matched every example that was run.
        checked: Something was run (False: no examples, or the problem's own code could not
            run here, e.g. a missing library; then ``passed`` is False and nothing is known).
        feedback: One line for the model: what was run and what went wrong.
    """

    passed: bool
    checked: bool
    feedback: str


def task_shape(task: Task) -> TaskShape:
    """Which shape of code task ``task`` is (module docstring)."""
    if task.source == "apps":
        return "apps"
    if task.source == "ds1000":
        return "ds1000"
    return "asserts"


def _quote(value: Any) -> str:
    text = value if isinstance(value, str) else json.dumps(value)
    text = text.strip()
    return repr(text[:_SHOWN] + ("..." if len(text) > _SHOWN else ""))


def sandbox_error(result: SandboxResult, timeout_s: float) -> str:
    """A one-line, exception-style reason a sandboxed run failed."""
    if result.status == "timeout":
        return f"TimeoutError: the program ran longer than {timeout_s:g} s"
    if result.status == "memory":
        return "MemoryError: the program exceeded the sandbox memory limit"
    if result.status == "killed":
        return "RuntimeError: the program was killed (output too large or a signal)"
    lines = [line.strip() for line in result.stderr.splitlines() if line.strip()]
    for line in reversed(lines):
        match = _EXCEPTION_LINE_RE.match(line)
        if match:
            return match.group(1)[:300]
    tail = lines[-1] if lines else "the program failed without a message"
    return f"RuntimeError: {tail[:300]}"


async def check_apps(task: Task, code: str, settings: OperatorSettings) -> PublicCheck:
    """Run an APPS candidate program on the statement's examples (``task.public_tests``)."""
    try:
        compile(code, "<program>", "exec")
    except SyntaxError as exc:
        return PublicCheck(False, True, f"SyntaxError: {exc.msg} (line {exc.lineno})")
    scorer = APPSAnswerScorer(
        case_timeout=settings.sandbox_timeout_s, memory_mb=settings.sandbox_memory_mb
    )
    cases = [json.loads(test) for test in task.public_tests]
    if not cases:
        return PublicCheck(
            False, False, "the statement shows no example to run; the program compiles"
        )
    failures = []
    for number, case in enumerate(cases, 1):
        expected = case["output"]
        program, stdin = scorer.program(task, code, case["input"])
        result = await run_python_async(
            program,
            timeout=settings.sandbox_timeout_s,
            memory_mb=settings.sandbox_memory_mb,
            stdin=stdin,
        )
        shown = f"example {number} (input {_quote(case['input'])})"
        if result.status != "ok":
            failures.append(f"{shown}: {sandbox_error(result, settings.sandbox_timeout_s)}")
        elif not scorer.judge(task, result, expected):
            if task.entry_point is None:
                got = result.stdout
            else:  # APPS wraps a return value in a one-item list
                got = result.value
                expected = expected[0] if isinstance(expected, list) and expected else expected
            failures.append(f"{shown}: expected {_quote(expected)}, got {_quote(got)}")
    if failures:
        shown = "; ".join(failures[:3])
        return PublicCheck(False, True, f"failed {len(failures)}/{len(cases)} examples: {shown}")
    kind = "standard input" if task.entry_point is None else f"calls of {task.entry_point}"
    return PublicCheck(True, True, f"passed all {len(cases)} examples of the statement ({kind})")


async def check_ds1000(task: Task, code: str, settings: OperatorSettings) -> PublicCheck:
    """Run a DS-1000 candidate inside the problem's context; report errors only."""
    if not task.public_tests:
        return PublicCheck(False, False, "this task has no check program to run")
    solution = postprocess(code)
    if not solution.strip():
        return PublicCheck(False, True, "EmptyAnswer: no code to put in the gap")
    timeout = max(settings.sandbox_timeout_s, DS1000_MIN_TIMEOUT_S)
    result = await run_python_async(
        f"code = {solution!r}\n{task.public_tests[0]}",
        timeout=timeout,
        memory_mb=max(settings.sandbox_memory_mb, DS1000_MIN_MEMORY_MB),
    )
    value = result.value
    if result.status != "ok" or not isinstance(value, list) or not value:
        why = sandbox_error(result, timeout)
        return PublicCheck(False, True, f"the code fails in the problem's context: {why}")
    if value[0] == "ok":
        return PublicCheck(
            True,
            True,
            "the code runs in the problem's context on its first input and sets what it "
            "should (whether the result is right is not checked)",
        )
    if value[0] == "unchecked":
        return PublicCheck(False, False, f"the problem's code cannot run here: {value[1]}")
    return PublicCheck(False, True, f"the code fails in the problem's context: {value[1]}")


async def check_candidate(task: Task, code: str, settings: OperatorSettings) -> PublicCheck:
    """`check_apps` or `check_ds1000` by `task_shape`.

    Raises:
        ValueError: ``task`` is an assert-style task (its operators check it themselves).
    """
    shape = task_shape(task)
    if shape == "apps":
        return await check_apps(task, code, settings)
    if shape == "ds1000":
        return await check_ds1000(task, code, settings)
    raise ValueError(f"task {task.id} ({task.source}) is assert-style: no public check here")


__all__ = [
    "DS1000_MIN_MEMORY_MB",
    "DS1000_MIN_TIMEOUT_S",
    "PublicCheck",
    "TaskShape",
    "check_apps",
    "check_candidate",
    "check_ds1000",
    "sandbox_error",
    "task_shape",
]
