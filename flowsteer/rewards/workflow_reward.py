"""The episode reward CWRPO optimises: R_div and R_ans composed with conditional release.

    gated (paper):  R = -1 + R_div + 1[R_div = 1] · R_ans
    ungated:        R = -1 + R_div + R_ans
    answer_only:    R = R_ans                       (plain GRPO reward)

The gate compares R_div with the largest value it can take (1.0 with the default weights)
within ``gate_tolerance``, since R_div is a float sum (0.2 + 0.2 + 0.2 + 0.4 is not exactly 1).
An episode that hit the turn limit without ``finish`` is scored the same way on its final graph
and flagged (``truncated``), so the trainer can log or filter it.

The simplest correct call is ``await reward.score_canvas(canvas)`` once the episode is over:
it takes the task, the final graph, the final graph's own answer (`Canvas.final_result`), the
truncation flag and the canvas's operator library from the canvas itself, so none of them can
come from somewhere else.
"""

from __future__ import annotations

import asyncio
import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal

from flowsteer.rewards.answer import AnswerScorer, score_answer
from flowsteer.rewards.structure import ScorableGraph, StructureReward
from flowsteer.tasks.task import Task

if TYPE_CHECKING:
    from flowsteer.canvas.canvas import Canvas
    from flowsteer.operators.library import OperatorLibrary

RewardMode = Literal["gated", "ungated", "answer_only"]


@dataclass(frozen=True)
class RewardOutput:
    """One episode's reward and its named parts.

    Attributes:
        total: The scalar CWRPO uses. With weights summing to 1: gated in [-1, 1],
            ungated in [-1, 1], answer_only in [0, 1].
        components: Every part by name, for logging: ``div/checker``, ``div/format``,
            ``div/size``, ``div/structure``, ``div`` (R_div), ``answer`` (R_ans; NaN when it was
            not computed, see ``WorkflowReward.score_answer_when_gated``), ``gate`` (1.0 when
            the answer reward was released), ``truncated`` (1.0 or 0.0).
        truncated: True when the episode ended at the turn limit without ``finish``.
    """

    total: float
    components: dict[str, float] = field(default_factory=dict)
    truncated: bool = False


class WorkflowReward:
    """R(τ) of an episode from its final graph and the final workflow's answer.

    Args:
        structure: R_div (its weights, k and which operators count); ``None``: the paper's
            `StructureReward` defaults.
        mode: ``"gated"`` (the paper's conditional release), ``"ungated"`` or
            ``"answer_only"`` (ablations).
        gate_tolerance: How close R_div must be to its maximum to open the gate.
        score_answer_when_gated: Compute R_ans even when the gate is closed, so it is logged
            (it does not change the total). False saves a sandbox run per gated code episode.
        answer_scorer: R_ans; defaults to `flowsteer.rewards.score_answer`.
        truncation_penalty: Subtracted from the total of an episode that hit the turn limit
            without ``finish`` (0, the paper: a truncated episode is scored on its final graph
            like a finished one, so nothing rewards finishing). A small penalty teaches a
            short-horizon run (the CPU quickstart) to end its episodes with ``finish``.

    Example:
        >>> from flowsteer.canvas.graph import WorkflowGraph
        >>> from flowsteer.tasks import Task
        >>> task = Task("g/0", "gsm8k", "math", "2+2?", "4")
        >>> graph = WorkflowGraph()
        >>> for name in ("Plan", "Programmer", "Custom", "ScEnsemble", "Format"):
        ...     _ = graph.add_operator(name)
        >>> _ = graph.add_structure("conditional", ["Verify", "Revise"], index=4)
        >>> reward = WorkflowReward()
        >>> out = reward(task, graph, "#### 4")
        >>> out.total, out.components["gate"]
        (1.0, 1.0)
        >>> round(reward(task, WorkflowGraph(), "#### 4").total, 6)  # empty graph: gate closed
        -1.0
    """

    def __init__(
        self,
        structure: StructureReward | None = None,
        mode: RewardMode = "gated",
        gate_tolerance: float = 1e-6,
        score_answer_when_gated: bool = True,
        answer_scorer: AnswerScorer | None = None,
        truncation_penalty: float = 0.0,
    ) -> None:
        if not (math.isfinite(truncation_penalty) and truncation_penalty >= 0):
            raise ValueError(
                f"truncation_penalty must be a finite number >= 0, got {truncation_penalty!r}"
            )
        if mode not in ("gated", "ungated", "answer_only"):
            raise ValueError(f"mode must be 'gated', 'ungated' or 'answer_only', got {mode!r}")
        if not gate_tolerance >= 0:
            raise ValueError(f"gate_tolerance must be >= 0, got {gate_tolerance!r}")
        self.structure = structure if structure is not None else StructureReward()
        if mode == "gated" and abs(self.structure.max_value - 1.0) > gate_tolerance:
            raise ValueError(
                "gated mode releases R_ans only when R_div = 1, so the four structure weights "
                f"must sum to 1; they sum to {self.structure.max_value:g}"
            )
        self.mode: RewardMode = mode
        self.gate_tolerance = gate_tolerance
        self.score_answer_when_gated = score_answer_when_gated
        self.answer_scorer: AnswerScorer = answer_scorer or score_answer
        self.truncation_penalty = truncation_penalty

    def __call__(
        self,
        task: Task,
        graph: ScorableGraph,
        prediction: str | None,
        *,
        truncated: bool = False,
        library: OperatorLibrary | None = None,
    ) -> RewardOutput:
        """Score one episode.

        Args:
            task: The task the episode worked on.
            graph: The final workflow graph (after ``finish``, or the last one at the turn
                limit).
            prediction: The final workflow's answer (for code, the program); None if it
                produced none.
            truncated: The episode ended at the turn limit without ``finish``.
            library: The canvas's operator library (which operators are checkers and
                formatters); ``None``: the structure reward's own (see `StructureReward`).

        Returns:
            The total and every named component.
        """
        if not isinstance(task, Task):
            raise TypeError(f"task must be a flowsteer.tasks.Task, got {type(task).__name__}")
        parts = self.structure.components(graph, library)
        r_div = parts["div"]
        gate = self.mode != "gated" or abs(r_div - self.structure.max_value) <= self.gate_tolerance
        need_answer = self.mode == "answer_only" or gate or self.score_answer_when_gated
        r_ans = float(self.answer_scorer(task, prediction)) if need_answer else float("nan")
        if self.mode == "answer_only":
            total = r_ans
        elif self.mode == "ungated":
            total = -1.0 + r_div + r_ans
        else:
            total = -1.0 + r_div + (r_ans if gate else 0.0)
        if truncated:
            total -= self.truncation_penalty
        parts["answer"] = r_ans
        parts["gate"] = 1.0 if gate else 0.0
        parts["truncated"] = 1.0 if truncated else 0.0
        return RewardOutput(total=total, components=parts, truncated=truncated)

    async def score_canvas(self, canvas: Canvas) -> RewardOutput:
        """Score a finished episode from its canvas: its task, final graph, the final graph's
        own answer (`Canvas.final_result`), truncation flag and operator library. The answer
        scorer runs in a thread (code answers run the sandbox)."""
        result = await canvas.final_result()
        prediction = result.answer if result is not None else None
        return await asyncio.to_thread(
            self,
            canvas.task,
            canvas.graph,
            prediction,
            truncated=canvas.truncated,
            library=canvas.library,
        )
