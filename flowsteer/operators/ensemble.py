"""Ensemble operators: choose or merge among the candidates of the last parallel block.

`ScEnsembleOperator` is self-consistency: candidates are grouped by a normal form of their
answer (`vote_key`: numeric value for math, SQuAD normalisation for qa, comment- and
blank-free code for code). A strict majority wins without any backend call, as in the
original self-consistency method, which is cheaper and cannot be talked out of a clear vote.
Only a tie (or all answers distinct) asks the backend which candidate is most consistent,
as AFlow's ScEnsemble does for every call; an unusable reply falls back to the first of the
tied candidates, and a failed call does too (with the error recorded).

`AggregateOperator` asks the backend to merge the candidates into one better answer.

With a single candidate (no parallel block before, or only one child answered) both pass it
through without a call.
"""

from __future__ import annotations

from collections import Counter
from typing import TYPE_CHECKING

from flowsteer.operators.base import Operator, OperatorOutput, WorkflowState, backend_error
from flowsteer.operators.parsing import parse_answer, parse_choice, vote_key
from flowsteer.operators.solving import answer_form

if TYPE_CHECKING:
    from flowsteer.llm.backend import LLMBackend


def _candidates(state: WorkflowState) -> tuple[str, ...]:
    if state.candidates:
        return state.candidates
    return (state.candidate,) if state.candidate else ()


class ScEnsembleOperator(Operator):
    """Majority over normalised answers; the backend breaks ties."""

    name = "ScEnsemble"
    role = "You identify the answer that most candidate solutions agree on."
    reads = ("candidates",)

    async def run(self, state: WorkflowState, prompt: str, llm: LLMBackend) -> OperatorOutput:
        candidates = _candidates(state)
        if not candidates:
            return OperatorOutput(error="NoCandidates: ScEnsemble has no candidates to vote on")
        if len(candidates) == 1:
            return OperatorOutput(text=candidates[0], answer=candidates[0])
        keys = [vote_key(c, state.task) for c in candidates]
        ranked = Counter(keys).most_common()
        top = ranked[0][1]
        if len(ranked) == 1 or top > ranked[1][1]:
            winner = candidates[keys.index(ranked[0][0])]
            text = f"majority {top}/{len(candidates)}: {winner}"
            return OperatorOutput(text=text, answer=winner)
        tied = {k for k, n in ranked if n == top}
        first = candidates[next(i for i, k in enumerate(keys) if k in tied)]
        listed = self.material(state)
        user = (
            f"{prompt}\n\n{listed}\n\nWhich candidate is most consistent with the others and "
            "with the problem? Answer with its letter inside <choice></choice>."
        )
        reply = await self.ask(llm, user)
        if not reply.ok:
            return OperatorOutput(text=first, answer=first, error=backend_error(reply))
        index = parse_choice(reply.text, len(candidates))
        winner = candidates[index] if index is not None else first
        note = f"chose ({chr(65 + index)})" if index is not None else "no clear choice; first tied"
        return OperatorOutput(text=f"{note}: {winner}", answer=winner)


class AggregateOperator(Operator):
    """Merges the candidates into one answer."""

    name = "Aggregate"
    role = "You merge several candidate solutions into one better solution."
    reads = ("candidates",)

    async def run(self, state: WorkflowState, prompt: str, llm: LLMBackend) -> OperatorOutput:
        candidates = _candidates(state)
        if not candidates:
            return OperatorOutput(error="NoCandidates: Aggregate has no candidates to merge")
        if len(candidates) == 1:
            return OperatorOutput(text=candidates[0], answer=candidates[0])
        user = f"{prompt}\n\n{self.material(state)}\n\n{answer_form(state.task)}"
        reply = await self.ask(llm, user)
        if not reply.ok:
            return OperatorOutput(error=backend_error(reply))
        answer = parse_answer(reply.text, state.task)
        if not answer:
            return OperatorOutput(text=reply.text, error="EmptyAnswer: Aggregate gave no answer")
        return OperatorOutput(text=reply.text.strip(), answer=answer)


__all__ = ["AggregateOperator", "ScEnsembleOperator"]
