"""What an operator implementation is, and what flows between the nodes of a workflow.

An operator (docs/design.md §2) is a prompt template plus an output parser over the backend LLM.
The executor hands every node the same three things:

* a `WorkflowState`: the task and what upstream nodes produced so far (the plan, the current
  candidate answer, the candidates of the last parallel block, the last checker's verdict and
  feedback). It is immutable, so parallel children can share it safely;
* the node's instruction (the policy's prompt, or the library's default prompt);
* an `LLMBackend` to call (the executor's metered view of the real backend: it counts calls
  and tokens and refuses calls past the workflow's budget).

It gets back an `OperatorOutput`, which the executor folds into the next state. An operator
never raises for anything the model or the sandbox does: a failure is an `OperatorOutput` with
`error` set, whose text starts with a Python-style exception name (``SyntaxError: ...``,
``BackendError: ...``) so the canvas feedback can suggest a repair.

Implementations subclass `Operator`, set `name`, and take an `OperatorSettings` (the knobs the
executor exposes in its own signature: sandbox limits, Programmer retries, sampling).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar

from flowsteer.llm.backend import Completion, Message

if TYPE_CHECKING:
    from flowsteer.llm.backend import LLMBackend
    from flowsteer.tasks.task import Task

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
        candidates: The answers of the last parallel block, in child order.
        code: The last program Programmer ran (``""``: none).
        feedback: The last checker's feedback (``""``: none).
        passed: The last checker's verdict, or ``None`` when no checker ran (or it failed).
    """

    task: Task
    plan: str = ""
    candidate: str | None = None
    candidates: tuple[str, ...] = ()
    code: str = ""
    feedback: str = ""
    passed: bool | None = None


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

    def material(self, state: WorkflowState, *parts: str) -> str:
        """The task and the named upstream parts as Markdown sections.

        Args:
            state: The input state.
            *parts: Any of ``plan``, ``candidate``, ``candidates``, ``feedback``, ``code``;
                empty ones are left out.
        """
        task = state.task
        sections = [f"## Problem\n{task.question.strip()}"]
        if task.context:
            sections.append(f"## Context\n{self.cut(task.context.strip())}")
        if task.kind == "code" and task.entry_point:
            sections.append(f"## Required function\n`{task.entry_point}`")
        for part in parts:
            if part == "candidates" and state.candidates:
                listed = "\n".join(
                    f"({chr(65 + i)}) {self.cut(c.strip())}" for i, c in enumerate(state.candidates)
                )
                sections.append(f"## Candidates\n{listed}")
            elif part == "candidate" and state.candidate:
                sections.append(f"## Candidate answer\n{self.cut(state.candidate.strip())}")
            elif part in ("plan", "feedback", "code") and getattr(state, part):
                title = {"plan": "Plan", "feedback": "Feedback", "code": "Program"}[part]
                sections.append(f"## {title}\n{self.cut(getattr(state, part).strip())}")
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
    "WorkflowState",
    "backend_error",
]
