"""The canvas: the workflow graph, the executor seam, the state machine and its feedback."""

from flowsteer.canvas.canvas import (
    AWAITING_PROMPT,
    BUILDING,
    Canvas,
    CanvasState,
    FinishConstraints,
    StepInfo,
    StepResult,
)
from flowsteer.canvas.execution import ExecutionResult, Executor, NodeRecord
from flowsteer.canvas.feedback import FeedbackRenderer
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
    "AWAITING_PROMPT",
    "BUILDING",
    "LOOP_COUNT_MAX",
    "LOOP_COUNT_MIN",
    "Canvas",
    "CanvasState",
    "ExecutionResult",
    "Executor",
    "FeedbackRenderer",
    "FinishConstraints",
    "GraphEditError",
    "GraphFormatError",
    "GraphIssue",
    "Node",
    "NodeRecord",
    "StepInfo",
    "StepResult",
    "WorkflowGraph",
]
