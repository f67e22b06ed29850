"""The seam between the canvas and whatever runs a workflow (issue 4: operators on a backend LLM).

The canvas only needs `Executor.execute(graph, task, scope=None) -> ExecutionResult`.
Implementations own timeouts, retries and sandboxing; they should *return* failures in `ExecutionResult.errors`
rather than raise (the canvas still catches anything raised and reports it as an error, so a
buggy executor cannot break an episode).

Episode scope. One executor serves many canvases at once (a rollout runs tasks x G episodes in
lockstep), so anything an executor remembers between executions (the prefix cache) must belong
to one episode: G episodes of one task are independent samples, and sharing a cached backend
call between them would give a GRPO group zero variance. The canvas creates a fresh
`ExecutionScope` at each ``reset()`` and passes it with every execution of that episode; an
executor keys its memory by the scope (weakly, so it is dropped with the episode) and keeps
nothing between calls made without one. Executors written against the older two-argument
protocol keep working: the canvas passes ``scope`` only to an ``execute`` that accepts it
(`accepts_scope`).
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

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
        calls: Backend LLM calls the workflow cost, counting the calls of steps replayed from
            the episode's prefix cache (they count against the budget as the calls they
            replace, so building a workflow edit by edit costs what building it at once does).
        tokens: Backend tokens the workflow cost (prompt + completion), counted the same way.
        cached_calls: How many of ``calls`` were replayed from the cache, not sent.
        seconds: Wall time of the whole execution.
    """

    answer: str | None = None
    node_outputs: dict[str, str] = field(default_factory=dict)
    trace: list[NodeRecord] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    calls: int = 0
    tokens: int = 0
    cached_calls: int = 0
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        """True when the run reported no error."""
        return not self.errors


class ExecutionScope:
    """The identity of one episode, for executors that remember things between executions.

    It carries nothing: executors key their per-episode memory by it (weakly), so the memory
    is dropped once the canvas that made the scope resets or goes away.
    """

    __slots__ = ("__weakref__",)

    def __repr__(self) -> str:
        return f"ExecutionScope(0x{id(self):x})"


@runtime_checkable
class Executor(Protocol):
    """Runs a workflow on a task. Must not mutate `graph` (the canvas keeps using it).

    ``scope``: the episode the execution belongs to (``None``: a standalone execution that
    must share nothing with any other).
    """

    async def execute(
        self, graph: WorkflowGraph, task: Task, scope: ExecutionScope | None = None
    ) -> ExecutionResult: ...


def accepts_scope(executor: Any) -> bool:
    """Whether ``executor.execute`` takes a ``scope`` argument (older executors do not)."""
    try:
        params = inspect.signature(executor.execute).parameters.values()
    except (AttributeError, TypeError, ValueError):
        return False
    return any(p.name == "scope" or p.kind is inspect.Parameter.VAR_KEYWORD for p in params)


__all__ = ["ExecutionResult", "ExecutionScope", "Executor", "NodeRecord", "accepts_scope"]
