"""Code answer scorer: run the task's hidden tests against the candidate in the sandbox.

The program that runs is built from four parts, each executed with ``exec`` in one shared
namespace by a small harness, so a failing part is attributed and a test cannot be skipped:

1. ``task.setup_code`` (MBPP ``test_setup_code``; usually empty);
2. the candidate. Markdown fences are stripped first (the last fenced block that defines the
   entry point, else the last fenced block). For a prompt-style task (HumanEval: the question is
   code that defines ``entry_point``) the task's prompt is always run first: a candidate that
   defines ``def <entry_point>(`` is a full program and simply redefines the stub (the prompt
   still supplies imports and helper functions the candidate may rely on); otherwise the
   candidate is a completion, appended to the prompt (indented by four spaces when its first
   line is not indented, because models often drop the body's indentation);
3. each hidden test snippet in ``task.tests``, in order (HumanEval: ``check`` + its call; MBPP:
   one assert each). ``task.public_tests`` are never used here: they are what a Test operator
   may see during the episode.

The candidate runs with ``__name__ == "__candidate__"`` so its ``if __name__ == "__main__":``
demo block does not run (the same effect as the official HumanEval harness's bare globals).
The harness's final expression is ``[passed, total]``, which the sandbox returns on its private
channel; a program that exits early (``sys.exit(0)``, ``os._exit(0)``) is status "error" there,
so it cannot fake a pass by printing or by exiting cleanly. The harness holds its own
references to ``exec``/``compile`` and restores the ``builtins`` module after the candidate
has run, so rebinding a builtin at import time cannot switch the tests off.

Scoring is pass/fail by default (1.0 only if every hidden test passes), as in the paper and in
pass@1: a fractional score for MBPP's three asserts would reward programs that are wrong. It is
configurable (``partial_credit=True`` gives passed / total) for ablations.

Not defended: a candidate that returns objects whose ``__eq__`` always answers True can pass an
``assert f(x) == y`` test; that needs a deliberately adversarial program.
"""

from __future__ import annotations

import re
import textwrap

from flowsteer.sandbox import SandboxResult, run_python, run_python_async
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
    """The whole program the sandbox runs: harness, setup, candidate, hidden tests.

    Its final expression is ``[passed, total]``.
    """
    candidate = build_candidate_program(task, prediction)
    call = f"__flowsteer_run({task.setup_code!r}, {candidate!r}, {list(task.tests)!r})"
    return f"{_HARNESS}\n{call}\n"


class CodeAnswerScorer:
    """Score a code candidate by the task's hidden tests, run in the sandbox.

    Args:
        timeout: Wall-clock seconds for the whole run (setup, candidate and all tests).
        memory_mb: Address-space limit of the sandboxed process, in MiB.
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

    def _check(self, task: Task, prediction: str | None) -> str | None:
        if task.kind != "code":
            raise ValueError(f"CodeAnswerScorer got a {task.kind!r} task ({task.id})")
        if not task.tests:
            raise ValueError(f"task {task.id} has no hidden tests to score a code answer with")
        if prediction is None:
            return None
        if not isinstance(prediction, str):
            raise TypeError(f"prediction must be a str or None, got {type(prediction).__name__}")
        return build_test_program(task, prediction) if prediction.strip() else None

    def score_result(self, result: SandboxResult) -> float:
        """The score a sandbox run of `build_test_program` earns."""
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
        program = self._check(task, prediction)
        if program is None:
            return 0.0
        return self.score_result(
            run_python(program, timeout=self.timeout, memory_mb=self.memory_mb)
        )

    async def score_async(self, task: Task, prediction: str | None) -> float:
        """`__call__` for asyncio callers: many candidates can be in flight at once."""
        program = self._check(task, prediction)
        if program is None:
            return 0.0
        result = await run_python_async(program, timeout=self.timeout, memory_mb=self.memory_mb)
        return self.score_result(result)
