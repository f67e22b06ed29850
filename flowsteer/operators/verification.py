"""Verification operators (checkers): each returns pass/fail plus feedback.

* `TestOperator` runs the task's *public* tests (never ``task.tests``, which score the reward)
  against the candidate program in the sandbox, and reports each failing assertion with the
  value the candidate actually returned. Tasks without public tests: a code task's program is
  only checked to load (the feedback says so); a math or qa task has nothing to execute, so
  Test falls back to a model check (like Verify) and the feedback says that no tests exist.
  APPS and DS-1000 candidates are checked by their own shape
  (`flowsteer.operators.public_checks`): an APPS program on the statement's examples (stdin
  and stdout, or calls of ``fn_name``), DS-1000 gap code inside the problem's context for
  errors only (it passes when it runs; whether its result is right stays hidden).
* `ReviewOperator` critiques the candidate; `VerifyOperator` re-derives the answer
  independently and compares. Both parse the verdict robustly (`parse_verdict`); a reply
  without any recognisable verdict counts as *fail* (a checker that cannot vouch for the
  candidate should not let it through), with feedback saying the verdict was unclear.

A checker with no candidate to check fails without calling the backend.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from flowsteer.isolation.sandbox import run_python_async
from flowsteer.operators.base import Operator, OperatorOutput, WorkflowState, backend_error
from flowsteer.operators.parsing import parse_verdict, tagged, vote_key
from flowsteer.operators.public_checks import check_candidate, sandbox_error, task_shape
from flowsteer.rewards.code_answer import build_candidate_program, strip_code_fences

if TYPE_CHECKING:
    from flowsteer.llm.backend import LLMBackend

_NO_CANDIDATE = "there is no candidate answer to check yet; put a solver before the checker"

# Runs each public test in the candidate's namespace. For ``assert <call> == <expected>`` it
# evaluates the left side again after a failure so the feedback can say what came back.
_PUBLIC_HARNESS = """\
def __flowsteer_public(candidate, tests):
    import ast
    namespace = {"__name__": "__candidate__"}
    try:
        exec(compile(candidate, "<candidate>", "exec"), namespace)
    except BaseException as exc:
        return ["load", "%s: %s" % (type(exc).__name__, exc)]
    failures = []
    for test in tests:
        try:
            exec(compile(test, "<test>", "exec"), namespace)
        except BaseException as exc:
            why = "%s: %s" % (type(exc).__name__, exc) if str(exc) else type(exc).__name__
            try:
                node = ast.parse(test).body[0]
                if isinstance(exc, AssertionError) and isinstance(node.test, ast.Compare):
                    got = eval(compile(ast.Expression(node.test.left), "<t>", "eval"), namespace)
                    why += " (got %s)" % repr(got)[:200]
            except BaseException:
                pass
            failures.append([test, why])
    return ["ran", failures]
"""


class _ModelChecker(Operator):
    """A checker that asks the backend for a verdict."""

    reads = ("candidate",)

    form = (
        "Explain briefly, then give your verdict as <verdict>PASS</verdict> if the candidate "
        "is correct or <verdict>FAIL</verdict> if it is not, followed by concrete feedback."
    )

    async def run(self, state: WorkflowState, prompt: str, llm: LLMBackend) -> OperatorOutput:
        if not state.candidate:
            return OperatorOutput(text=_NO_CANDIDATE, passed=False, feedback=_NO_CANDIDATE)
        return await self.model_check(state, prompt, llm)

    async def model_check(
        self, state: WorkflowState, prompt: str, llm: LLMBackend, note: str = ""
    ) -> OperatorOutput:
        user = f"{prompt}\n\n{self.material(state)}\n\n{self.form}"
        reply = await self.ask(llm, user)
        if not reply.ok:
            return OperatorOutput(error=backend_error(reply))
        text = reply.text.strip()
        passed = self.verdict(text, state)
        feedback = (note + text) if passed is not None else f"{note}(no clear verdict) {text}"
        return OperatorOutput(text=feedback, passed=bool(passed), feedback=feedback)

    def verdict(self, text: str, state: WorkflowState) -> bool | None:
        return parse_verdict(text)


class ReviewOperator(_ModelChecker):
    """Critiques the candidate; pass/fail with concrete feedback."""

    name = "Review"
    role = "You review solutions critically and point out concrete errors."


class VerifyOperator(_ModelChecker):
    """Re-derives the answer independently; pass/fail with the reason.

    When the reply has no verdict but gives its own ``<answer>``, the verdict is whether that
    answer equals the candidate under the task's vote normal form.
    """

    name = "Verify"
    role = "You independently check answers by solving the problem again."
    form = (
        "Solve the problem yourself, put your own answer in <answer></answer>, then compare "
        "it with the candidate and give <verdict>PASS</verdict> or <verdict>FAIL</verdict> "
        "with the reason."
    )

    def verdict(self, text: str, state: WorkflowState) -> bool | None:
        found = parse_verdict(text)
        if found is not None:
            return found
        own = tagged(text, "answer")
        if own and state.candidate and state.task.kind != "code":
            return vote_key(own, state.task) == vote_key(state.candidate, state.task)
        return None


class TestOperator(_ModelChecker):
    """Public tests in the sandbox (see the module docstring)."""

    __test__ = False  # not a pytest class
    name = "Test"
    role = "You check a candidate answer against the problem."

    async def run(self, state: WorkflowState, prompt: str, llm: LLMBackend) -> OperatorOutput:
        task = state.task
        candidate = state.candidate or (state.code if task.kind == "code" else "")
        if not candidate:
            return OperatorOutput(text=_NO_CANDIDATE, passed=False, feedback=_NO_CANDIDATE)
        if task.kind != "code":
            note = f"(no public tests for a {task.kind} task; checked by the model) "
            return await self.model_check(state, prompt, llm, note)
        if task_shape(task) != "asserts":  # APPS examples, DS-1000's error-only check
            code = strip_code_fences(candidate, task.entry_point)
            check = await check_candidate(task, code, self.settings)
            return OperatorOutput(text=check.feedback, passed=check.passed, feedback=check.feedback)
        program = build_candidate_program(task, candidate)
        tests = list(task.public_tests)
        code = f"{_PUBLIC_HARNESS}\n__flowsteer_public({program!r}, {tests!r})\n"
        result = await run_python_async(
            code, timeout=self.settings.sandbox_timeout_s, memory_mb=self.settings.sandbox_memory_mb
        )
        if result.status != "ok" or not isinstance(result.value, list):
            why = sandbox_error(result, self.settings.sandbox_timeout_s)
            feedback = f"the candidate program could not be tested: {why}"
            return OperatorOutput(text=feedback, passed=False, feedback=feedback)
        stage, detail = result.value
        if stage == "load":
            feedback = f"the candidate program fails when loaded: {detail}"
            return OperatorOutput(text=feedback, passed=False, feedback=feedback)
        if not tests:
            feedback = "no public tests for this task; the program loads without error"
            return OperatorOutput(text=feedback, passed=True, feedback=feedback)
        if not detail:
            feedback = f"passed all {len(tests)} public tests"
            return OperatorOutput(text=feedback, passed=True, feedback=feedback)
        shown = "; ".join(f"`{t}` -> {why}" for t, why in detail[:3])
        more = f" (+{len(detail) - 3} more)" if len(detail) > 3 else ""
        feedback = f"failed {len(detail)}/{len(tests)} public tests: {shown}{more}"
        return OperatorOutput(text=feedback, passed=False, feedback=feedback)


__all__ = ["ReviewOperator", "TestOperator", "VerifyOperator"]
