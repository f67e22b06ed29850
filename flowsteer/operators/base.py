"""What an operator implementation is, and what flows between the nodes of a workflow.

An operator (docs/design.md §2) is a prompt template plus an output parser over the backend LLM.
The executor hands every node the same three things:

* a `WorkflowState`: the task and what upstream nodes produced so far. It is immutable, so
  parallel children can share it safely;
* the node's instruction (the policy's prompt, or the library's default prompt);
* an `LLMBackend` to call (the executor's metered view of the real backend: it counts calls
  and tokens and refuses calls past the workflow's budget).

It gets back an `OperatorOutput`, which `WorkflowState.apply` folds into the next state. An
operator never raises for anything the model or the sandbox does: a failure is an
`OperatorOutput` with `error` set, whose text starts with a Python-style exception name
(``SyntaxError: ...``, ``BackendError: ...``) so the canvas feedback can suggest a repair.

Data flow
---------
Defined here once: each operator's prompt shows the parts of the state named in its class's
`Operator.reads` (`Operator.material`), and the state changes only through
`WorkflowState.apply` (one node) and `WorkflowState.after_parallel` (a parallel block). Every
prompt starts with the question, the context (qa) or required function (code), and the
policy's prompt for the node; the table says what else it gets and what it writes.

==================  =====  ==================  ==============  ==========  ==================
operator            plan   current candidate   candidate list  feedback    writes
==================  =====  ==================  ==============  ==========  ==================
Plan, Decompose     yes    no                  no              no          plan
Programmer,         yes    yes (to improve)    yes             yes         candidate (+ code)
Custom,
AnswerGenerate
Test, Review,       no     yes (checked)       no              no          verdict, feedback
Verify
Revise              yes    yes (to fix)        yes             yes         candidate
ScEnsemble,         no     only without list   yes (consumed)  no          candidate
Aggregate
Format              no     yes (reformatted)   no              no          candidate (never
                                                                           worse: see Format)
parallel [A, B, …]  children all run on the same input state; their answers become the
                    candidate list (child order) and the first answer the current candidate;
                    a checker child's verdict on the input candidate is dropped if it changed
==================  =====  ==================  ==============  ==========  ==================

Rules behind the table:

* **Candidate list.** A parallel block's output is the list of its children's answers. It
  stays visible to the nodes after the block (solvers and Revise see it listed) until a node
  writes a new candidate: an ensemble consumes it into one answer, and a solver, Revise or
  Format replaces it (the list described answers the new candidate supersedes). So in
  ``[A, B, C] -> Verify ? Revise : done -> ScEnsemble`` the ensemble votes on A, B, C when
  Verify passed, and passes the revised answer through when Revise ran: a revision is never
  outvoted by the stale answers it corrected.
* **Checkers** judge the current candidate (after a parallel block: the first child's answer)
  and write a verdict and feedback; they never change the candidate or the list.
* **Feedback** is about the current candidate: the next solver or Revise sees it, and any new
  candidate clears it (and the verdict), so feedback is never shown next to an answer it was
  not about. In ``(Custom -> Verify) * 3`` the second Custom therefore sees the first
  iteration's candidate and Verify's feedback on it, and its prompt differs from the first.
* **Plan** is kept until the next Plan or Decompose; solvers and Revise always see it.
"""

from __future__ import annotations

import dataclasses
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar, Literal

from flowsteer.llm.backend import Completion, Message

if TYPE_CHECKING:
    from flowsteer.llm.backend import LLMBackend
    from flowsteer.tasks.task import Task

Part = Literal["plan", "candidate", "candidates", "feedback"]
"""A part of the `WorkflowState` an operator's prompt can show (see `Operator.reads`)."""

SYSTEM_TEMPLATE = (
    "You are the {name} operator of an agentic workflow. {role}\n"
    "Follow the instruction, use the material given, and keep to the requested output form."
)


@dataclass(frozen=True)
class OperatorSettings:
    """Knobs shared by the operator implementations (the executor passes its own values).

    Attributes:
        sandbox_timeout_s: Wall-clock limit of one sandboxed program (Programmer, Test).
        sandbox_memory_mb: Address-space limit of one sandboxed program.
        programmer_retries: How many times Programmer re-asks with the error after a failed run.
        temperature: Sampling temperature of operator calls (``None``: the backend default).
        max_tokens: Completion budget of one operator call (``None``: the backend default).
        max_material_chars: Each upstream text (plan, candidate, feedback) is cut to this
            many characters in a prompt, so a runaway output cannot blow up every later call.
    """

    sandbox_timeout_s: float = 5.0
    sandbox_memory_mb: int = 512
    programmer_retries: int = 2
    temperature: float | None = None
    max_tokens: int | None = None
    max_material_chars: int = 4000

    def __post_init__(self) -> None:
        if self.sandbox_timeout_s <= 0:
            raise ValueError(f"sandbox_timeout_s must be > 0, got {self.sandbox_timeout_s}")
        if self.sandbox_memory_mb < 64:
            raise ValueError(f"sandbox_memory_mb must be >= 64, got {self.sandbox_memory_mb}")
        if self.programmer_retries < 0:
            raise ValueError(f"programmer_retries must be >= 0, got {self.programmer_retries}")
        if self.max_material_chars < 100:
            raise ValueError(f"max_material_chars must be >= 100, got {self.max_material_chars}")

    def sampling(self) -> dict[str, float | int]:
        """The ``**sampling`` of a `complete` call (only what is set)."""
        out: dict[str, float | int] = {}
        if self.temperature is not None:
            out["temperature"] = self.temperature
        if self.max_tokens is not None:
            out["max_tokens"] = self.max_tokens
        return out


@dataclass(frozen=True)
class WorkflowState:
    """What the nodes upstream of a node produced; the input of every operator.

    Attributes:
        task: The task being solved (operators never read ``task.tests``: those are hidden).
        plan: The latest Plan/Decompose output (``""``: none yet).
        candidate: The current candidate answer (code for code tasks), or ``None``.
        candidates: The answers of the last parallel block, in child order, until a node
            writes a new candidate (``()``: no live list).
        code: The last program Programmer ran (``""``: none).
        feedback: The last checker's feedback on the current candidate (``""``: none).
        passed: The last checker's verdict on the current candidate, or ``None`` when none
            checked it.
    """

    task: Task
    plan: str = ""
    candidate: str | None = None
    candidates: tuple[str, ...] = ()
    code: str = ""
    feedback: str = ""
    passed: bool | None = None

    def apply(self, out: OperatorOutput) -> WorkflowState:
        """The state after one node's output (see the data-flow rules in the module docstring).

        A new candidate replaces the current one and clears the candidate list, the feedback
        and the verdict (they were about answers it supersedes); ``None`` fields keep the old
        value.
        """
        changes: dict[str, Any] = {}
        if out.plan is not None:
            changes["plan"] = out.plan
        if out.answer:
            changes.update(candidate=out.answer, candidates=(), feedback="", passed=None)
        if out.code is not None:
            changes["code"] = out.code
        if out.passed is not None:
            changes["passed"] = out.passed
        if out.feedback is not None:
            changes["feedback"] = out.feedback
        return dataclasses.replace(self, **changes) if changes else self

    def after_parallel(self, outs: Sequence[OperatorOutput]) -> WorkflowState:
        """The state after a parallel block whose children (all run on `self`) gave `outs`.

        Each output is applied in child order; then, if any child answered, the answers
        become the candidate list and the first of them the current candidate. A checker in
        the block judged the block's input candidate, so when the current candidate changed
        its verdict and feedback are dropped (whatever the child order).
        """
        state = self
        for out in outs:
            state = state.apply(out)
        answers = tuple(o.answer for o in outs if o.answer)
        if answers:
            state = dataclasses.replace(state, candidates=answers, candidate=answers[0])
            if answers[0] != self.candidate:
                state = dataclasses.replace(state, feedback="", passed=None)
        return state


@dataclass(frozen=True)
class OperatorOutput:
    """What one operator run produced; `None` fields leave the state unchanged.

    Attributes:
        text: The node's output as shown in the trace (a checker's feedback, a plan, ...).
        answer: A new candidate answer.
        plan: A new plan.
        code: The program that was run.
        passed: A checker's verdict.
        feedback: A checker's feedback.
        error: Why the operator failed, starting with an exception-style name.
    """

    text: str = ""
    answer: str | None = None
    plan: str | None = None
    code: str | None = None
    passed: bool | None = None
    feedback: str | None = None
    error: str | None = None


class Operator(ABC):
    """Base of every operator implementation.

    Args:
        settings: Sandbox limits, retries and sampling (see `OperatorSettings`).
    """

    name: ClassVar[str] = ""
    role: ClassVar[str] = ""
    reads: ClassVar[tuple[Part, ...]] = ()
    """The state parts this operator's prompt shows (one row of the module's table)."""

    def __init__(self, settings: OperatorSettings | None = None) -> None:
        self.settings = settings if settings is not None else OperatorSettings()

    @abstractmethod
    async def run(self, state: WorkflowState, prompt: str, llm: LLMBackend) -> OperatorOutput:
        """Run once on `state` with instruction `prompt`; never raises for model/sandbox faults."""

    # ------------------------------------------------------------------ helpers
    def system(self) -> str:
        return SYSTEM_TEMPLATE.format(name=self.name or type(self).__name__, role=self.role)

    def cut(self, text: str) -> str:
        """`text` cut to the material limit, marking the cut."""
        limit = self.settings.max_material_chars
        return text if len(text) <= limit else text[:limit] + "\n[... truncated]"

    def material(self, state: WorkflowState, *parts: Part) -> str:
        """The task and the upstream parts this operator reads, as Markdown sections.

        Args:
            state: The input state.
            *parts: The parts to show (default: `reads`); empty ones are left out.
        """
        task = state.task
        sections = [f"## Problem\n{task.question.strip()}"]
        if task.context:
            sections.append(f"## Context\n{self.cut(task.context.strip())}")
        if task.kind == "code" and task.entry_point:
            sections.append(f"## Required function\n`{task.entry_point}`")
        for part in parts or self.reads:
            if part == "plan" and state.plan:
                sections.append(f"## Plan\n{self.cut(state.plan.strip())}")
            elif part == "candidate" and state.candidate:
                sections.append(f"## Candidate answer\n{self.cut(state.candidate.strip())}")
            elif part == "candidates" and state.candidates:
                listed = "\n".join(
                    f"({chr(65 + i)}) {self.cut(c.strip())}" for i, c in enumerate(state.candidates)
                )
                sections.append(f"## Candidates (from a parallel block)\n{listed}")
            elif part == "feedback" and state.feedback:
                verdict = {True: "passed", False: "failed", None: "no verdict"}[state.passed]
                title = f"Checker feedback on the candidate answer ({verdict})"
                sections.append(f"## {title}\n{self.cut(state.feedback.strip())}")
        return "\n\n".join(sections)

    async def ask(self, llm: LLMBackend, user: str, history: Sequence[Message] = ()) -> Completion:
        """One backend call with this operator's system prompt; never raises."""
        messages: list[Message] = [
            Message(role="system", content=self.system()),
            Message(role="user", content=user),
            *history,
        ]
        try:
            return await llm.complete(messages, **self.settings.sampling())
        except Exception as exc:  # a backend that breaks its contract must not break the run
            return Completion.failure(f"{type(exc).__name__}: {exc}")


def backend_error(completion: Completion) -> str:
    """The error text of a failed call, as an operator reports it."""
    return f"BackendError: {completion.error}"


__all__ = [
    "Operator",
    "OperatorOutput",
    "OperatorSettings",
    "Part",
    "WorkflowState",
    "backend_error",
]
