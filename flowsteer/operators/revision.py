"""Revision: `ReviseOperator` rewrites the candidate using the last checker's feedback.

Without a candidate it solves from scratch (with the feedback, if any), so a Revise placed
first still produces an answer instead of an error.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from flowsteer.operators.base import Operator, OperatorOutput, WorkflowState, backend_error
from flowsteer.operators.parsing import parse_answer
from flowsteer.operators.solving import answer_form

if TYPE_CHECKING:
    from flowsteer.llm.backend import LLMBackend


class ReviseOperator(Operator):
    """Corrects the candidate with the checker's feedback."""

    name = "Revise"
    role = "You fix solutions using the feedback of a checker."
    reads = ("plan", "candidate", "candidates", "feedback")

    async def run(self, state: WorkflowState, prompt: str, llm: LLMBackend) -> OperatorOutput:
        material = self.material(state)
        user = f"{prompt}\n\n{material}\n\n{answer_form(state.task)}"
        reply = await self.ask(llm, user)
        if not reply.ok:
            return OperatorOutput(error=backend_error(reply))
        answer = parse_answer(reply.text, state.task)
        if not answer:
            return OperatorOutput(text=reply.text, error="EmptyAnswer: Revise gave no answer")
        return OperatorOutput(text=reply.text.strip(), answer=answer)


__all__ = ["ReviseOperator"]
