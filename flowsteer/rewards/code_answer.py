"""Code answer scorer: run the task's hidden tests against the candidate, out of its reach.

The candidate and the tests run in two separate sandboxes (`flowsteer.isolation.hidden_tests`): the
candidate's process only answers calls ("``add(1, 2)``?"), and a trusted judge process runs the
tests on the decoded answers and decides each verdict. Nothing the candidate does in its own
process (frames, `gc`, builtins, ``__eq__`` overrides, forged output, exiting early) reaches a
verdict; the guarantees and their limits are listed in `flowsteer.isolation.hidden_tests` and tested
there with one hostile candidate per attack. The parts:

1. ``task.setup_code`` (MBPP ``test_setup_code``; usually empty) runs in both processes;
2. the candidate, in its process. Markdown fences are stripped first (the last fenced block
   that defines the entry point, else the last fenced block). For a prompt-style task
   (HumanEval: the question is code that defines ``entry_point``) the task's prompt is always
   run first: a candidate that defines ``def <entry_point>(`` is a full program and simply
   redefines the stub (the prompt still supplies imports and helper functions the candidate
   may rely on); otherwise the candidate is a completion, appended to the prompt (indented by
   four spaces when its first line is not indented, because models often drop the body's
   indentation). The judge runs the prompt too, so the tests' helpers (HumanEval's ``poly``,
   ``encode_cyclic``) are the task's own, not the candidate's;
3. each hidden test snippet in ``task.tests``, in order, in the judge (HumanEval: ``check`` +
   its call; MBPP: one assert each). ``task.public_tests`` are never used here: they are what
   a Test operator may see during the episode. The entry point and any other name the tests
   use but neither they nor the trusted setup define are the candidate's.

The candidate runs with ``__name__ == "__candidate__"`` so its ``if __name__ == "__main__":``
demo block does not run (the same effect as the official HumanEval harness's bare globals).

Scoring is pass/fail by default (1.0 only if every hidden test passes), as in the paper and in
pass@1: a fractional score for MBPP's three asserts would reward programs that are wrong. It is
configurable (``partial_credit=True`` gives passed / total) for ablations.
"""

from __future__ import annotations

import re
import textwrap

from flowsteer.isolation.hidden_tests import (
    HiddenTestReport,
    run_hidden_tests,
    run_hidden_tests_async,
)
from flowsteer.isolation.sandbox import SandboxResult
from flowsteer.tasks.task import Task

_FENCE_RE = re.compile(r"```[ \t]*([\w+-]*)[^\n]*\n(.*?)(?:```|\Z)", re.S)

_HARNESS = """\
import builtins as __flowsteer_builtins


def __flowsteer_run(setup, candidate, tests, exec=exec, compile=compile, len=len,
                    BaseException=BaseException, builtins=__flowsteer_builtins,
                    saved=dict(__flowsteer_builtins.__dict__)):
    namespace = {"__name__": "__candidate__", "__builtins__": builtins}
    try:
        exec(compile(setup, "<setup>", "exec"), namespace)
        exec(compile(candidate, "<candidate>", "exec"), namespace)
    except BaseException as exc:
        import traceback
        traceback.print_exception(type(exc), exc, exc.__traceback__)
        return [0, len(tests)]
    builtins.__dict__.clear()  # undo a candidate's edits to builtins before the tests run
    builtins.__dict__.update(saved)
    passed = 0
    for index, test in enumerate(tests):
        try:
            exec(compile(test, "<test %d>" % index, "exec"), namespace)
            passed += 1
        except BaseException as exc:
            import sys
            print("[hidden test %d] %s: %s" % (index, type(exc).__name__, exc), file=sys.stderr)
    return [passed, len(tests)]
"""


def strip_code_fences(text: str, entry_point: str | None = None) -> str:
    """The code inside markdown fences, or the text itself when it has none.

    Args:
        text: A model's answer: plain code, or prose with fenced code blocks.
        entry_point: If given, prefer the last block that defines this function.

    Returns:
        The chosen block's code (the last block that defines ``entry_point``, else the last
        block), or ``text`` unchanged when there is no fence.

    Example:
        >>> strip_code_fences("Here:\\n```python\\ndef f():\\n    return 1\\n```\\nDone.")
        'def f():\\n    return 1\\n'
    """
    blocks = [m.group(2) for m in _FENCE_RE.finditer(text)]
    if not blocks:
        return text
    if entry_point:
        defining = [b for b in blocks if re.search(rf"\bdef\s+{re.escape(entry_point)}\s*\(", b)]
        if defining:
            return defining[-1]
    return blocks[-1]


def _is_prompt_task(task: Task) -> bool:
    """HumanEval-style: the question is code that defines the entry point's stub."""
    if not task.entry_point or f"def {task.entry_point}(" not in task.question:
        return False
    try:
        compile(task.question, "<prompt>", "exec")
    except SyntaxError:
        return False
    return True


def build_candidate_program(task: Task, prediction: str) -> str:
    """The candidate part of the program (before the hidden tests) for ``task``.

    Args:
        task: A code task.
        prediction: The candidate program or completion, possibly in markdown fences.

    Returns:
        The code that defines the candidate's functions.

    Example:
        >>> from flowsteer.tasks import Task
        >>> task = Task("h/0", "humaneval", "code", 'def inc(x):\\n    "Add one."\\n', "",
        ...             entry_point="inc")
        >>> print(build_candidate_program(task, "return x + 1"))
        def inc(x):
            "Add one."
            return x + 1
    """
    code = strip_code_fences(prediction, task.entry_point)
    if not _is_prompt_task(task):
        return code
    prompt = task.question
    if not prompt.endswith("\n"):
        prompt += "\n"
    assert task.entry_point is not None
    if re.search(rf"^\s*def\s+{re.escape(task.entry_point)}\s*\(", code, re.M):
        return prompt + "\n" + code
    lines = [line for line in code.splitlines() if line.strip()]
    if lines and not lines[0][:1].isspace():
        code = textwrap.indent(code, "    ")
    return prompt + code


def build_test_program(task: Task, prediction: str) -> str:
    """Setup, candidate and hidden tests as ONE program (final expression ``[passed, total]``).

    Not what `CodeAnswerScorer` runs: in one process the candidate can forge the result. It
    remains for comparisons (``bench/rewards.py`` times it as a bare subprocess) and debugging.
    """
    candidate = build_candidate_program(task, prediction)
    call = f"__flowsteer_run({task.setup_code!r}, {candidate!r}, {list(task.tests)!r})"
    return f"{_HARNESS}\n{call}\n"


class CodeAnswerScorer:
    """Score a code candidate by the task's hidden tests, run in the sandbox.

    Args:
        timeout: Wall-clock seconds for the whole run (setup, candidate and all tests).
        memory_mb: Memory limit of each of the two sandboxed processes, in MiB.
        partial_credit: False (default): 1.0 only if every hidden test passes. True: the
            fraction of hidden tests that pass (for ablations; it rewards wrong programs).

    Example:
        >>> from flowsteer.tasks import Task
        >>> task = Task("m/0", "mbpp", "code", "Write add(a, b).", "", entry_point="add",
        ...             tests=("assert add(1, 2) == 3", "assert add(0, 0) == 0"))
        >>> score = CodeAnswerScorer(timeout=20.0)
        >>> score(task, "```python\\ndef add(a, b):\\n    return a + b\\n```")
        1.0
        >>> score(task, "def add(a, b):\\n    return 3")
        0.0
    """

    def __init__(
        self, timeout: float = 10.0, memory_mb: int = 512, partial_credit: bool = False
    ) -> None:
        if not timeout > 0:
            raise ValueError(f"timeout must be positive, got {timeout!r}")
        if memory_mb < 64:
            raise ValueError(f"memory_mb must be >= 64, got {memory_mb!r}")
        self.timeout = timeout
        self.memory_mb = memory_mb
        self.partial_credit = partial_credit

    def _check(self, task: Task, prediction: str | None) -> tuple[str, str] | None:
        """(candidate code, trusted setup) for the two processes, or None for no answer."""
        if task.kind != "code":
            raise ValueError(f"CodeAnswerScorer got a {task.kind!r} task ({task.id})")
        if not task.tests:
            raise ValueError(f"task {task.id} has no hidden tests to score a code answer with")
        if prediction is None:
            return None
        if not isinstance(prediction, str):
            raise TypeError(f"prediction must be a str or None, got {type(prediction).__name__}")
        if not prediction.strip():
            return None
        candidate = build_candidate_program(task, prediction)
        trusted = task.setup_code
        if _is_prompt_task(task):
            trusted += "\n" + task.question
        return task.setup_code + "\n" + candidate, trusted

    def _run_args(self, task: Task) -> dict:
        names = (task.entry_point,) if task.entry_point else ()
        return {"candidate_names": names, "timeout": self.timeout, "memory_mb": self.memory_mb}

    def score_report(self, report: HiddenTestReport) -> float:
        """The score a `run_hidden_tests` report earns."""
        if not report.passed:
            return 0.0
        if self.partial_credit:
            return report.fraction
        return 1.0 if all(report.passed) else 0.0

    def score_result(self, result: SandboxResult) -> float:
        """The score a single-process run of `build_test_program` earns.

        Kept for older callers; such a run can be forged from inside the candidate, so the
        scorer itself never uses it (see `score_report`).
        """
        value = result.value
        if result.status != "ok" or not isinstance(value, list) or len(value) != 2:
            return 0.0
        passed, total = value
        if not isinstance(passed, int) or not isinstance(total, int) or total <= 0:
            return 0.0
        if self.partial_credit:
            return max(0.0, min(1.0, passed / total))
        return 1.0 if passed == total else 0.0

    def __call__(self, task: Task, prediction: str | None) -> float:
        """Run the hidden tests; see the class docstring for the score."""
        parts = self._check(task, prediction)
        if parts is None:
            return 0.0
        candidate, trusted = parts
        report = run_hidden_tests(candidate, task.tests, setup=trusted, **self._run_args(task))
        return self.score_report(report)

    async def score_async(self, task: Task, prediction: str | None) -> float:
        """`__call__` for asyncio callers: many candidates can be in flight at once."""
        parts = self._check(task, prediction)
        if parts is None:
            return 0.0
        candidate, trusted = parts
        report = await run_hidden_tests_async(
            candidate, task.tests, setup=trusted, **self._run_args(task)
        )
        return self.score_report(report)
