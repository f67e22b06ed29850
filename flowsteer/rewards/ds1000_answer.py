"""DS-1000 answer scorer: the problem's own ``code_context`` harness, run in the sandbox.

The program is the official one (``test_ds1000.py``): ``code = <the candidate's text>``, the
problem's ``code_context``, ``test_execution(code)`` and, when the context defines it,
``test_string(code)``. It passes when the sandboxed run reaches its end (status "ok"): every
generated test input gave a result the problem's own ``exec_test`` accepted. The candidate is
cleaned as the official ``postprocess`` does (cut at ``</code>``, at a closing fence, at ``END
SOLUTION``; ``<code>`` removed), after taking the last markdown-fenced block when there is one
(the official code would keep the prose before a fence and fail on it).

Skipped, not failed: before running, the modules the context imports (``import x`` / ``from x
import``, also inside its ``exec_context`` string) are imported once in the sandbox, with this
scorer's memory limit; if one cannot be (a library that is not installed, such as tensorflow,
or one too large for the limit), scoring raises `AnswerSkipped` naming it, whatever the
prediction. The check is the parent's, on the dataset's code alone, so a candidate cannot turn
its failure into a skip.

What is and is not guaranteed. Guaranteed: the run is isolated like every sandboxed program;
a candidate that exits early (``sys.exit``, ``os._exit``), crashes, or outlives the timeout
fails; printing cannot pass. Not guaranteed: the comparison of results happens inside the
sandboxed process, as in the official harness, because the results are library objects
(DataFrames, arrays, plots) that the parent could only compare by deserialising objects the
candidate built. A candidate written to attack the harness (rebinding the context's
``exec_test`` through ``__main__`` or a frame) can therefore pass without solving the problem.
DS-1000 is an evaluation source; do not train on it with this reward.
"""

from __future__ import annotations

import re
import threading

from flowsteer.rewards.code_answer import strip_code_fences
from flowsteer.rewards.skipped import AnswerSkipped
from flowsteer.sandbox import SandboxResult, run_python, run_python_async
from flowsteer.tasks.task import Task

_IMPORT_RE = re.compile(
    r"^[ \t]*(?:import[ \t]+([\w., \t]+)|from[ \t]+([A-Za-z_]\w*)[\w.]*[ \t]+import\b)",
    re.MULTILINE,
)

_PROBE = """\
def __flowsteer_probe(names):
    import importlib
    failed = []
    for name in names:
        try:
            importlib.import_module(name)
        except BaseException as exc:
            failed.append([name, type(exc).__name__ + ": " + str(exc)[:200]])
    return failed


__flowsteer_probe(%r)
"""


def postprocess(code: str) -> str:
    """The candidate's code as the official DS-1000 evaluation cleans it.

    Example:
        >>> postprocess("Here it is:\\n```python\\nresult = df.sum()\\n```\\nDone.")
        'result = df.sum()\\n'
        >>> postprocess("<code>\\nresult = a.T\\n</code>\\nEND SOLUTION")
        '\\nresult = a.T\\n'
    """
    code = strip_code_fences(code)
    code = code.split("</code>")[0]
    code = code.replace("```python", "")
    code = code.split("```")[0]
    code = code.split("\nEND SOLUTION")[0]
    return code.replace("<code>", "")


def imported_modules(code_context: str) -> tuple[str, ...]:
    """The top-level modules a DS-1000 context imports, in order of first appearance.

    Example:
        >>> imported_modules('import numpy as np\\nexec_context = r\\"\\"\\"\\nfrom scipy import stats\\n\\"\\"\\"')
        ('numpy', 'scipy')
    """
    names = []
    for listed, source in _IMPORT_RE.findall(code_context):
        if source:
            names.append(source)
        for part in listed.split(","):  # "import tokenize, io", "import numpy as np"
            name = part.split()[0].split(".")[0] if part.split() else ""
            if name.isidentifier():
                names.append(name)
    return tuple(dict.fromkeys(names))


class DS1000AnswerScorer:
    """Score a DS-1000 candidate with the problem's own harness (see the module docstring).

    Args:
        timeout: Wall-clock seconds for the whole run (the official evaluation allows 120).
        memory_mb: Address-space limit of the run, in MiB (pandas, scipy and scikit-learn
            together need about 1 GiB of address space just to import).

    Raises:
        AnswerSkipped: From `__call__`, when the sandbox cannot import a module the problem
            uses.
    """

    def __init__(self, timeout: float = 120.0, memory_mb: int = 4096) -> None:
        if not timeout > 0:
            raise ValueError(f"timeout must be positive, got {timeout!r}")
        if memory_mb < 64:
            raise ValueError(f"memory_mb must be >= 64, got {memory_mb!r}")
        self.timeout = timeout
        self.memory_mb = memory_mb
        self._importable: dict[str, str | None] = {}  # module -> None, or why it fails
        self._lock = threading.Lock()

    def _harness(self, task: Task) -> str:
        if task.kind != "code" or len(task.tests) != 1:
            raise ValueError(f"task {task.id} is not a DS-1000 task (one code_context program)")
        return task.tests[0]

    def _unknown_modules(self, harness: str) -> list[str]:
        with self._lock:
            return [m for m in imported_modules(harness) if m not in self._importable]

    def _record_probe(self, task: Task, names: list[str], result: SandboxResult) -> None:
        if result.status != "ok" or not isinstance(result.value, list):
            # Not cached: a probe cut short (a loaded machine) says nothing about the modules.
            why = f"the import check of {', '.join(names)} ended with status {result.status!r}"
            raise AnswerSkipped(task.id, why)
        failed = {str(item[0]): str(item[1]) for item in result.value}
        with self._lock:
            for name in names:
                self._importable[name] = failed.get(name)

    def _check_skip(self, task: Task, harness: str) -> None:
        with self._lock:
            missing = {m: self._importable[m] for m in imported_modules(harness)}
        missing = {m: why for m, why in missing.items() if why is not None}
        if missing:
            shown = "; ".join(f"{m} ({why})" for m, why in missing.items())
            raise AnswerSkipped(task.id, f"the sandbox cannot import {shown}")

    def _program(self, harness: str, prediction: str | None) -> str | None:
        if prediction is None:
            return None
        if not isinstance(prediction, str):
            raise TypeError(f"prediction must be a str or None, got {type(prediction).__name__}")
        code = postprocess(prediction)
        if not code.strip():
            return None
        return f"code = {code!r}\n{harness}"

    def __call__(self, task: Task, prediction: str | None) -> float:
        """1.0 if the harness accepts the candidate, 0.0 if not; `AnswerSkipped` if it cannot
        run here."""
        harness = self._harness(task)
        names = self._unknown_modules(harness)
        if names:
            probe = run_python(_PROBE % (names,), timeout=self.timeout, memory_mb=self.memory_mb)
            self._record_probe(task, names, probe)
        self._check_skip(task, harness)
        program = self._program(harness, prediction)
        if program is None:
            return 0.0
        result = run_python(program, timeout=self.timeout, memory_mb=self.memory_mb)
        return float(result.status == "ok")

    async def score_async(self, task: Task, prediction: str | None) -> float:
        """`__call__` for asyncio callers."""
        harness = self._harness(task)
        names = self._unknown_modules(harness)
        if names:
            probe = await run_python_async(
                _PROBE % (names,), timeout=self.timeout, memory_mb=self.memory_mb
            )
            self._record_probe(task, names, probe)
        self._check_skip(task, harness)
        program = self._program(harness, prediction)
        if program is None:
            return 0.0
        result = await run_python_async(program, timeout=self.timeout, memory_mb=self.memory_mb)
        return float(result.status == "ok")
