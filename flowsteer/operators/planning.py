"""Planning operators: Plan and Decompose structure the problem and never answer it.

Their output goes into `WorkflowState.plan`, which every later solver reads; the candidate
answer is left untouched, so a planner cannot silently replace a solution with a plan.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from flowsteer.operators.base import Operator, OperatorOutput, WorkflowState, backend_error
from flowsteer.operators.parsing import tagged

if TYPE_CHECKING:
    from flowsteer.llm.backend import LLMBackend


class PlanOperator(Operator):
    """Writes a step-by-step plan (``<plan>`` tag if present, else the whole reply)."""

    name = "Plan"
    role = "You plan how to solve a problem; you never give the final answer."
    reads = ("plan",)
    tag = "plan"
    form = "Write the plan as short numbered steps inside <plan></plan>."

    async def run(self, state: WorkflowState, prompt: str, llm: LLMBackend) -> OperatorOutput:
        user = f"{prompt}\n\n{self.material(state)}\n\n{self.form}"
        reply = await self.ask(llm, user)
        if not reply.ok:
            return OperatorOutput(error=backend_error(reply))
        plan = tagged(reply.text, self.tag) or reply.text.strip()
        if not plan:
            return OperatorOutput(error=f"EmptyAnswer: {self.name} returned an empty plan")
        return OperatorOutput(text=plan, plan=plan)


class DecomposeOperator(PlanOperator):
    """Splits the problem into numbered sub-questions (stored as the plan)."""

    name = "Decompose"
    role = "You split a problem into simpler sub-questions; you never answer them."
    tag = "subproblems"
    form = "List the sub-questions, numbered, inside <subproblems></subproblems>."


__all__ = ["DecomposeOperator", "PlanOperator"]
