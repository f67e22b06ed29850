"""Record parser for DS-1000: data-science problems whose answer fills a gap in given code.

Each problem's ``code_context`` is its own test harness: ``exec_context`` (the problem's code
with an ``[insert]`` gap), ``test_execution(solution)`` that runs it on generated inputs and
compares the result, and on some problems ``test_string(solution)`` that checks the code's text
(e.g. no loops). `Task.tests` holds one program: the context followed by those calls, as the
official evaluation writes it; it expects a variable ``code`` holding the candidate's text,
which `flowsteer.rewards.ds1000_answer` defines first. (Run as a plain snippet after a program,
it fails on the undefined ``code``: it can never pass by accident.)

`Task.public_tests` holds one program for the operators (`ds1000_check_program`): the same
context, but it only runs the candidate on the first generated input and reports whether the
candidate's code raised (and which error) or left no ``result``; it never compares the result
with the expected one, so an operator learns nothing the hidden test decides. It also expects
``code``, and its last expression is ``["ok"]``, ``["error", why]`` (the candidate failed) or
``["unchecked", why]`` (the context itself failed before the candidate ran: a missing library).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from flowsteer.tasks.record import RecordError, str_field
from flowsteer.tasks.task import Task

GAP_INSTRUCTION = (
    "Write only the code that goes where the solution belongs (after BEGIN SOLUTION): it runs "
    "inside the problem's own code, with the variables shown above already defined, and must "
    "leave the result where the problem says. Do not repeat the given setup code. Reply with "
    "that code alone in one ```python block."
)


def ds1000_test_program(code_context: str) -> str:
    """The official test program after the candidate's ``code = ...`` line."""
    calls = "test_execution(code)\n"
    if "test_string(" in code_context:
        calls += "test_string(code)\n"
    return f"{code_context.rstrip()}\n\n{calls}"


_CHECK_RUNNER = """\
class FlowsteerChecked(BaseException):
    pass


def flowsteer_check(code, context, wants_result):
    import builtins

    real_exec = builtins.exec
    outcome = []

    def exec(source, env=None, *rest):
        try:
            real_exec(source, env, *rest)
        except BaseException as exc:
            outcome.append(["error", "%s: %s" % (type(exc).__name__, str(exc)[:300])])
            raise FlowsteerChecked() from None
        if wants_result and isinstance(env, dict) and "result" not in env:
            outcome.append(["error", "NameError: the code ran but did not set `result`"])
        else:
            outcome.append(["ok"])
        raise FlowsteerChecked()  # stop before the harness compares anything

    namespace = {"__name__": "__main__"}
    try:
        real_exec(compile(context, "<code_context>", "exec"), namespace)
    except BaseException as exc:
        return ["unchecked", "%s: %s" % (type(exc).__name__, str(exc)[:300])]
    namespace["exec"] = exec  # the harness's exec(code, test_env) now stops after the code
    try:
        namespace["test_execution"](code)
    except FlowsteerChecked:
        pass
    except BaseException as exc:
        if not outcome:
            return ["unchecked", "%s: %s" % (type(exc).__name__, str(exc)[:300])]
    return outcome[0] if outcome else ["unchecked", "the harness never ran the code"]


"""


def ds1000_check_program(code_context: str) -> str:
    """The operators' error-only run of the context (module docstring), after ``code = ...``.

    The context runs first on its own, so a library it cannot import is reported as
    ``unchecked``, not as the candidate's error.
    """
    wants_result = '["result"]' in code_context or "['result']" in code_context
    try:
        compile(code_context, "<code_context>", "exec")
    except SyntaxError as err:
        why = f"not valid Python: {err.msg} (line {err.lineno})"
        raise RecordError("code_context", why) from None
    return f"{_CHECK_RUNNER}flowsteer_check(code, {code_context!r}, {wants_result!r})\n"


def parse_ds1000(record: Mapping[str, Any], task_id: str) -> Task:
    """DS-1000 (HF ``xlangai/DS-1000``): ``prompt``, ``reference_code``, ``code_context`` and
    ``metadata`` (``library``, ``problem_id``, ``perturbation_type``)."""
    prompt = str_field(record, "prompt")
    reference = str_field(record, "reference_code", allow_empty=True)
    context = str_field(record, "code_context")
    if "def test_execution(" not in context:
        raise RecordError("code_context", "no 'def test_execution(solution)' harness")
    metadata = record.get("metadata")
    if not isinstance(metadata, Mapping):
        raise RecordError("metadata", "missing or not a {'library', 'problem_id', ...} mapping")
    try:
        library = str_field(metadata, "library")
    except RecordError as err:
        raise RecordError(f"metadata.{err.field}", err.problem) from None
    pid = metadata.get("problem_id")
    if pid is None or isinstance(pid, bool) or not isinstance(pid, int | str):
        raise RecordError("metadata.problem_id", "missing or not an integer")
    meta = {
        "library": library,
        "perturbation_type": metadata.get("perturbation_type"),
        "perturbation_origin_id": metadata.get("perturbation_origin_id"),
    }
    question = f"{prompt.rstrip()}\n\n{GAP_INSTRUCTION}"
    return Task(
        f"ds1000/{pid}", "ds1000", "code", question, reference,
        tests=(ds1000_test_program(context),),
        public_tests=(ds1000_check_program(context),), meta=meta,
    )  # fmt: skip
