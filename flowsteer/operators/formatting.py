"""Formatting: `FormatOperator` turns the candidate into the task's final-answer form.

math: a bare number or expression (``18``, ``\\frac{1}{2}``); qa: a short span; code: a
complete program that defines ``task.entry_point``. The backend is asked to reformat and its
reply is read with `final_form`; when that yields nothing usable (or the call fails), the
candidate itself is read with `final_form`, so Format never turns an answer into none. For a
code task the candidate wins whenever the reply does not define the entry point (a model
asked to "format" code sometimes returns only part of it).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from flowsteer.operators.base import Operator, OperatorOutput, WorkflowState, backend_error
from flowsteer.operators.parsing import final_form
from flowsteer.rewards.code_answer import build_candidate_program

if TYPE_CHECKING:
    from flowsteer.llm.backend import LLMBackend
    from flowsteer.tasks.task import Task

_FORMS = {
    "math": "Reply with only the final answer (a number or expression) inside <answer></answer>.",
    "qa": "Reply with only the shortest exact answer span inside <answer></answer>.",
    "code": (
        "Reply with only the complete Python program that defines `{entry}` (with its "
        "imports) in one ```python block."
    ),
    # APPS standard-input programs and DS-1000 gap code: the question says what code it is.
    "code/no_entry": "Reply with only the Python code the problem asks for in one ```python block.",
}


class FormatOperator(Operator):
    """Extracts the final answer in the expected form (see the module docstring)."""

    name = "Format"
    role = "You extract the final answer in exactly the required form."

    async def run(self, state: WorkflowState, prompt: str, llm: LLMBackend) -> OperatorOutput:
        task = state.task
        if not state.candidate:
            return OperatorOutput(error="NoCandidate: Format has no candidate answer to format")
        kind = task.kind if task.kind != "code" or task.entry_point else "code/no_entry"
        form = _FORMS[kind].format(entry=task.entry_point)
        user = f"{prompt}\n\n{self.material(state, 'candidate')}\n\n{form}"
        reply = await self.ask(llm, user)
        error = None if reply.ok else backend_error(reply)
        answer = final_form(reply.text, task) if reply.ok else None
        if answer is None:
            answer = self._fallback(state.candidate, task)
        if answer is None:
            return OperatorOutput(
                text=reply.text, error=error or "EmptyAnswer: no final answer could be extracted"
            )
        return OperatorOutput(text=answer, answer=answer, error=error)

    @staticmethod
    def _fallback(candidate: str, task: Task) -> str | None:
        answer = final_form(candidate, task)
        if answer is None and task.kind == "code":
            program = build_candidate_program(task, candidate)
            answer = final_form(program, task)
        return answer


__all__ = ["FormatOperator"]
