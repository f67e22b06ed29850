"""The seam between the canvas and whatever runs a workflow (issue 4: operators on a backend LLM).

The canvas only needs `Executor.execute(graph, task) -> ExecutionResult`. Implementations own
timeouts, retries and sandboxing; they should *return* failures in `ExecutionResult.errors`
rather than raise (the canvas still catches anything raised and reports it as an error, so a
buggy executor cannot break an episode).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol, runtime_checkable

if TYPE_CHECKING:
    from flowsteer.canvas.graph import WorkflowGraph
    from flowsteer.tasks import Task


@dataclass(frozen=True)
class NodeRecord:
    """What one node did during one execution (one entry of `ExecutionResult.trace`).

    Attributes:
        node_id: The graph node id (``"n3"``); a loop body node appears once per iteration.
        operator: The operator name.
        output: Its output text (for a checker, its feedback).
        passed: For a checker (Test, Review, Verify): its verdict; ``None`` otherwise.
        error: The error it raised or reported, if any (e.g. a Python traceback's last line).
        seconds: Wall time of this node.
        iteration: The loop iteration (0-based) or 0 outside loops.
    """

    node_id: str
    operator: str
    output: str = ""
    passed: bool | None = None
    error: str | None = None
    seconds: float = 0.0
    iteration: int = 0


@dataclass(frozen=True)
class ExecutionResult:
    """The outcome of running a workflow once on one task.

    Attributes:
        answer: The workflow's final answer (the last node's answer output), or ``None`` when
            it produced none (empty workflow, or the run failed before any answer).
        node_outputs: Last output of each node, by node id.
        trace: Per-node records in execution order.
        errors: Error messages, in order of occurrence (``[]`` on success). Messages that start
            with the Python exception name (``"SyntaxError: ..."``, ``"TimeoutError: ..."``) get a
            targeted repair suggestion in the feedback.
        calls: Backend LLM calls made.
        tokens: Backend tokens used (prompt + completion).
        seconds: Wall time of the whole execution.
    """

    answer: str | None = None
    node_outputs: dict[str, str] = field(default_factory=dict)
    trace: list[NodeRecord] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    calls: int = 0
    tokens: int = 0
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        """True when the run reported no error."""
        return not self.errors


@runtime_checkable
class Executor(Protocol):
    """Runs a workflow on a task. Must not mutate `graph` (the canvas keeps using it)."""

    async def execute(self, graph: WorkflowGraph, task: Task) -> ExecutionResult: ...


__all__ = ["ExecutionResult", "Executor", "NodeRecord"]
