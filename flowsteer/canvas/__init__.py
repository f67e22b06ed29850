"""The canvas: the workflow graph, the executor seam, the state machine and its feedback."""

from flowsteer.canvas.execution import ExecutionResult, Executor, NodeRecord
from flowsteer.canvas.graph import (
    LOOP_COUNT_MAX,
    LOOP_COUNT_MIN,
    GraphEditError,
    GraphFormatError,
    GraphIssue,
    Node,
    WorkflowGraph,
)

__all__ = [
    "LOOP_COUNT_MAX",
    "LOOP_COUNT_MIN",
    "ExecutionResult",
    "Executor",
    "GraphEditError",
    "GraphFormatError",
    "GraphIssue",
    "Node",
    "NodeRecord",
    "WorkflowGraph",
]
