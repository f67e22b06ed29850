"""Solving operators: each produces a candidate answer.

* `ProgrammerOperator` writes Python, runs it in the sandbox and retries with the error. The
  program is loaded the way the code reward loads a candidate: executed in a namespace named
  ``__candidate__`` (not ``__main__``), so an ``if __name__ == "__main__":`` demo, which may
  call ``input()``, does not run. For math and qa tasks the program defines ``solve()``, which
  is then called and its value (else the last printed line) is the answer, normalised by
  `flowsteer.rewards.math_answer.program_answer` (``Fraction(1, 2)`` -> ``1/2``, float noise
  ``0.30000000000000004`` -> ``0.3``) before any vote or score; a program without ``solve()``
  runs as a script and its last printed line is the answer. For code tasks the program must
  define ``task.entry_point``; loading it checks syntax, imports and top-level errors, and
  the program itself is the answer. APPS and DS-1000 programs are checked by their own shape
  (`flowsteer.operators.public_checks`): an APPS program runs on the statement's examples
  (stdin/stdout, or calls of ``fn_name``) and a wrong output counts as a failure; DS-1000 gap
  code runs inside the problem's context on its first input, reporting only errors. A run
  that fails (exception, timeout, memory, no answer, a wrong example output) is fed back to
  the model with the error's last line, up to ``settings.programmer_retries`` more times.
* `CustomOperator` answers with the policy's free-form instruction.
* `AnswerGenerateOperator` reasons step by step and ends with ``<answer>``.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from flowsteer.isolation.sandbox import run_python_async
from flowsteer.llm.backend import Message
from flowsteer.operators.base import Operator, OperatorOutput, WorkflowState, backend_error
from flowsteer.operators.parsing import parse_answer
from flowsteer.operators.public_checks import check_candidate, sandbox_error, task_shape
from flowsteer.rewards.code_answer import build_candidate_program, strip_code_fences
from flowsteer.rewards.math_answer import normalize_program_output, program_answer

if TYPE_CHECKING:
    from flowsteer.llm.backend import LLMBackend
    from flowsteer.tasks.task import Task


def answer_form(task: Task) -> str:
    """The output-form instruction every solver appends, by task kind."""
    if task.kind == "code" and task.entry_point is None:  # APPS stdin, DS-1000: see question
        return "Reply with the Python code the problem asks for in one ```python block."
    if task.kind == "code":
        return (
            f"Reply with the complete Python program that defines `{task.entry_point}` (with "
            "its imports) in one ```python block."
        )
    if task.kind == "math":
        return "End with the final answer alone inside <answer></answer>."
    return "End with the shortest exact answer span inside <answer></answer>."


def _load(program: str) -> str:
    """Code that runs `program` in a fresh namespace named ``__candidate__``, the way the code
    reward loads a candidate: its ``if __name__ == "__main__":`` block (a demo that may read
    ``input()``) does not run."""
    return (
        '__flowsteer_ns = {"__name__": "__candidate__"}\n'
        f'exec(compile({program!r}, "<program>", "exec"), __flowsteer_ns)\n'
    )


def upstream_note(state: WorkflowState) -> str:
    """What a solver should do with earlier answers shown in its prompt (empty: none shown)."""
    if not state.candidate and not state.candidates:
        return ""
    return (
        "\n\nEarlier answers (and any checker feedback on them) are shown above: solve the "
        "problem yourself, keeping what is right and correcting what the feedback shows wrong."
    )


class ProgrammerOperator(Operator):
    """Python in the sandbox, with retries on failure (see the module docstring)."""

    name = "Programmer"
    role = "You write correct, self-contained Python programs."
    reads = ("plan", "candidate", "candidates", "feedback")

    def _form(self, task: Task) -> str:
        if task.kind == "code":
            return answer_form(task)
        return (
            "Write a Python program that defines `solve()` returning the final answer (a "
            "number or a short string). Do not read input and do not call solve() yourself. "
            "Reply with the program in one ```python block."
        )

    async def run(self, state: WorkflowState, prompt: str, llm: LLMBackend) -> OperatorOutput:
        task = state.task
        user = f"{prompt}\n\n{self.material(state)}{upstream_note(state)}\n\n{self._form(task)}"
        history: list[Message] = []
        error = "EmptyAnswer: no program was written"
        code = ""
        for _attempt in range(self.settings.programmer_retries + 1):
            reply = await self.ask(llm, user, history)
            if not reply.ok:
                return OperatorOutput(error=backend_error(reply), code=code or None)
            code = strip_code_fences(reply.text, task.entry_point or "solve").strip("\n")
            answer, error = await self._execute(code, task)
            if error is None and answer:
                shown = f"```python\n{code}\n```" + ("" if task.kind == "code" else f"\n{answer}")
                return OperatorOutput(text=shown, answer=answer, code=code)
            history += [
                Message(role="assistant", content=reply.text),
                Message(
                    role="user",
                    content=f"The program failed: {error}\nFix it and reply with the whole "
                    "corrected program in one ```python block.",
                ),
            ]
        return OperatorOutput(text=f"```python\n{code}\n```", code=code, error=error)

    async def _execute(self, code: str, task: Task) -> tuple[str | None, str | None]:
        """Run `code`; return ``(answer, None)`` or ``(None, error)``."""
        if not code.strip():
            return None, "EmptyAnswer: the reply contained no program"
        if task.kind == "code" and task_shape(task) != "asserts":  # APPS, DS-1000
            check = await check_candidate(task, code, self.settings)
            if check.passed or not check.checked:  # nothing to run here: the code stands
                return code, None
            return None, check.feedback
        solve = task.kind != "code" and re.search(r"^def\s+solve\s*\(", code, re.M)
        program = build_candidate_program(task, code) if task.kind == "code" else code
        try:
            compile(program, "<program>", "exec")
        except SyntaxError as exc:
            return None, f"SyntaxError: {exc.msg} (line {exc.lineno})"
        if task.kind == "code":  # loaded as the reward loads it; True if it defines the entry
            runner = f"{_load(program)}callable(__flowsteer_ns.get({task.entry_point!r}))\n"
        elif solve:
            runner = f"{_load(program)}__flowsteer_ns['solve']()\n"
        else:
            runner = program  # a script that prints its answer runs as a script
        result = await run_python_async(
            runner,
            timeout=self.settings.sandbox_timeout_s,
            memory_mb=self.settings.sandbox_memory_mb,
        )
        if result.status != "ok":
            return None, sandbox_error(result, self.settings.sandbox_timeout_s)
        if task.kind == "code":
            if task.entry_point and result.value is not True:
                return None, f"NameError: the program does not define {task.entry_point}()"
            return program, None  # self-contained: a HumanEval prompt's imports come along
        value = result.value
        if value is None:
            printed = [line for line in result.stdout.splitlines() if line.strip()]
            if not printed:
                return None, "EmptyAnswer: solve() returned None and nothing was printed"
            return normalize_program_output(printed[-1].strip()), None
        return program_answer(value), None


class CustomOperator(Operator):
    """Answers with the policy's instruction as the prompt."""

    name = "Custom"
    role = "You solve problems carefully."
    reads = ("plan", "candidate", "candidates", "feedback")

    async def run(self, state: WorkflowState, prompt: str, llm: LLMBackend) -> OperatorOutput:
        material = f"{self.material(state)}{upstream_note(state)}"
        user = f"{prompt}\n\n{material}\n\n{answer_form(state.task)}"
        reply = await self.ask(llm, user)
        if not reply.ok:
            return OperatorOutput(error=backend_error(reply))
        answer = parse_answer(reply.text, state.task)
        if not answer:
            return OperatorOutput(text=reply.text, error=f"EmptyAnswer: {self.name} gave none")
        return OperatorOutput(text=reply.text.strip(), answer=answer)


class AnswerGenerateOperator(CustomOperator):
    """Step-by-step reasoning, then the answer."""

    name = "AnswerGenerate"
    role = "You think step by step, then state the final answer."


__all__ = [
    "AnswerGenerateOperator",
    "CustomOperator",
    "ProgrammerOperator",
    "answer_form",
    "sandbox_error",
    "upstream_note",
]
