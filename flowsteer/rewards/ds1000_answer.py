"""DS-1000 answer scorer: the problem's own ``code_context`` harness, judged outside the candidate.

The checks are the official ones (``test_ds1000.py``): the problem's ``code_context``, then
``test_execution(code)`` and, when the context defines it, ``test_string(code)``, with ``code``
the candidate's text. The candidate passes when both run to their end. The candidate is
cleaned as the official ``postprocess`` does (cut at ``</code>``, at a closing fence, at ``END
SOLUTION``; ``<code>`` removed), after taking the last markdown-fenced block when there is one
(the official code would keep the prose before a fence and fail on it).

Where the checks run (`flowsteer.isolation.hidden_tests`: two sandboxes joined by pipes). The harness —
generating the inputs, computing the expected results, ``exec_test``, ``test_string`` — runs in
the trusted **judge** process. Its one ``exec(code, test_env)`` of the candidate's code is
handed to the **candidate** process: the judge sends the code and the test inputs (pickled by
the judge: trusted data, unpickled only by the candidate), the candidate process runs them and
sends back every variable the code left, ``result`` above all, encoded *by value*
(`flowsteer.rewards.ds1000_codec`: builtin values and raw array bytes, never pickle); the judge
rebuilds fresh DataFrames, arrays, sparse matrices... with its own constructors and compares
them with its own ``exec_test``. So, guaranteed (tested with hostile candidates): the candidate
never sees an expected result; rebinding ``exec_test`` or the harness (through ``__main__``,
frames, ``gc``), exiting early (``sys.exit``, ``os._exit``), printing, an object whose
``__eq__`` always says yes, and patched numpy/pandas/testing functions in its own process
change nothing; a result the codec cannot carry (a fitted model, a figure) is
`ds1000_codec.Unjudgeable` and fails. These guarantees are `flowsteer.isolation.hidden_tests`'s and hold
in the sandbox modes with a uid drop or PID namespace.

Not judged this way: problems whose context imports matplotlib. Their tests inspect the figure
the candidate's code drew (``plt.gca()``...), state that lives in the process that ran the code
and cannot be sent by value; they run the official way, harness and candidate in one sandboxed
process, where a candidate written to attack the harness (rebinding ``exec_test`` through
``__main__`` or a frame) can pass without solving the problem. `judged_outside` says which
mode a task gets. Results outside the codec's types fail where the official harness might pass
them (a test that only checks ``type(result)`` of a model object), and so does a test input
that cannot be pickled (an instance of a class the context itself defines).

Skipped, not failed: before running, the modules the context imports (``import x`` / ``from x
import``, also inside its ``exec_context`` string) are imported once in the sandbox, with this
scorer's memory limit; if one cannot be (a library that is not installed, such as tensorflow,
or one too large for the limit), scoring raises `AnswerSkipped` naming it, whatever the
prediction. The check is the parent's, on the dataset's code alone, so a candidate cannot turn
its failure into a skip.
"""

from __future__ import annotations

import re
import threading
from pathlib import Path

from flowsteer.isolation.hidden_tests import (
    HiddenTestReport,
    run_hidden_tests,
    run_hidden_tests_async,
)
from flowsteer.isolation.sandbox import SandboxResult, run_python, run_python_async
from flowsteer.rewards.code_answer import strip_code_fences
from flowsteer.rewards.skipped import AnswerSkipped
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


_CODEC = Path(__file__).with_name("ds1000_codec.py").read_text()
# Both sides load the codec into a namespace of its own, so its names never shadow the
# problem's (a context may define its own ``encode``).
_LOAD_CODEC = f"""\
flowsteer_codec = {{"__name__": "ds1000_codec"}}
exec(compile({_CODEC!r}, "<ds1000_codec>", "exec"), flowsteer_codec)
"""

# The candidate's side: the codec, and the one function the judge calls.
_SERVER = (
    _LOAD_CODEC
    + """

def flowsteer_ds1000_exec(source, env_blob):
    import pickle
    import types

    encode = flowsteer_codec["encode"]
    env = pickle.loads(env_blob)  # the judge's test inputs
    exec(source, env)
    values = {}
    for name, value in list(env.items()):
        if type(name) is not str or name.startswith("__"):
            continue
        if isinstance(value, types.ModuleType | types.FunctionType | type):
            continue
        try:
            values[name] = encode(value)
        except Exception as exc:
            values[name] = ["opaque", "%s (%s)" % (type(value).__name__, exc)]
    return values
"""
)

# The judge's side, run after the problem's context: the codec and an `exec` that the
# context's test_execution finds before the builtin one.
_JUDGE_SHIM = (
    _LOAD_CODEC
    + """

def exec(source, env=None, *rest):
    import pickle

    if type(source) is not str or type(env) is not dict or rest:
        raise TypeError("the DS-1000 harness may only exec(code, test_env) the candidate")
    values = flowsteer_ds1000_exec(source, pickle.dumps(env))
    if type(values) is not dict:
        raise TypeError("the candidate's variables did not come back as a dict")
    decode = flowsteer_codec["decode"]
    for name, node in values.items():
        try:
            env[name] = decode(node)
        except Exception as exc:  # malformed or forged: fails any test that reads it
            env[name] = flowsteer_codec["Unjudgeable"]("malformed value (%s)" % exc)
"""
)
_REMOTE_EXEC = "flowsteer_ds1000_exec"


def judged_outside(task: Task) -> bool:
    """Whether `DS1000AnswerScorer` judges ``task`` in a process of its own (module
    docstring): every problem whose context does not import matplotlib."""
    return "matplotlib" not in imported_modules(task.tests[0] if task.tests else "")


def split_harness(harness: str) -> tuple[str, list[str]]:
    """The problem's ``code_context`` and its test calls, from the `Task.tests` program."""
    calls = ["test_execution(code)"]
    context, found, _ = harness.rpartition("\n\ntest_execution(code)\n")
    if not found:
        raise ValueError("not a DS-1000 test program (no final test_execution(code) call)")
    if "test_string(code)" in harness[len(context) :]:
        calls.append("test_string(code)")
    return context, calls


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

    def _code(self, prediction: str | None) -> str | None:
        if prediction is None:
            return None
        if not isinstance(prediction, str):
            raise TypeError(f"prediction must be a str or None, got {type(prediction).__name__}")
        code = postprocess(prediction)
        return code if code.strip() else None

    def _judge_args(self, harness: str, code: str) -> tuple[str, list[str], str]:
        context, calls = split_harness(harness)
        setup = f"code = {code!r}\n{context}\n\n{_JUDGE_SHIM}"
        return _SERVER, calls, setup

    def _limits(self) -> dict[str, float]:
        return {"timeout": self.timeout, "memory_mb": self.memory_mb}

    def _passed(self, report: HiddenTestReport) -> float:
        return float(bool(report.passed) and all(report.passed))

    def __call__(self, task: Task, prediction: str | None) -> float:
        """1.0 if the harness accepts the candidate, 0.0 if not; `AnswerSkipped` if it cannot
        run here."""
        harness = self._harness(task)
        names = self._unknown_modules(harness)
        if names:
            probe = run_python(_PROBE % (names,), timeout=self.timeout, memory_mb=self.memory_mb)
            self._record_probe(task, names, probe)
        self._check_skip(task, harness)
        code = self._code(prediction)
        if code is None:
            return 0.0
        if not judged_outside(task):
            result = run_python(f"code = {code!r}\n{harness}", **self._limits())
            return float(result.status == "ok")
        server, calls, setup = self._judge_args(harness, code)
        report = run_hidden_tests(
            server, calls, setup=setup, candidate_names=[_REMOTE_EXEC], **self._limits()
        )
        return self._passed(report)

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
        code = self._code(prediction)
        if code is None:
            return 0.0
        if not judged_outside(task):
            result = await run_python_async(f"code = {code!r}\n{harness}", **self._limits())
            return float(result.status == "ok")
        server, calls, setup = self._judge_args(harness, code)
        report = await run_hidden_tests_async(
            server, calls, setup=setup, candidate_names=[_REMOTE_EXEC], **self._limits()
        )
        return self._passed(report)
