"""R_div: the diversity-constrained structure reward over the final workflow graph.

    R_div = w_checker·[has checker] + w_format·[has Format]
            + w_size·[#operators ≥ k] + w_structure·[has parallel / conditional / loop]

Defaults 0.2 / 0.2 / 0.2 / 0.4 (DESIGN.md §4). Operators are counted with repeats and
including those inside structures (what `WorkflowGraph.operator_names` lists), so a checker
that is the condition of a conditional counts as a checker. The default ``k = 6`` is the value
in the authors' public implementation (``min_operators_for_score = 6`` in
``src/interactive/trajectory_reward.py`` of beita6969/FlowSteer); the paper text we could read
does not state it.

The reward reads only ``operator_names()`` and ``structure_kinds()``, so any graph type with
those two methods (the `WorkflowGraph`, a test stand-in) can be scored.
"""

from __future__ import annotations

from typing import Protocol

_PARTS = ("checker", "format", "size", "structure")


class ScorableGraph(Protocol):
    """What R_div needs from a workflow graph."""

    def operator_names(self) -> list[str]: ...

    def structure_kinds(self) -> list[str]: ...


class StructureReward:
    """R_div of a workflow graph, with its four parts named for logging.

    Args:
        checker_weight: Reward for at least one checker operator.
        format_weight: Reward for at least one formatting operator.
        size_weight: Reward for at least ``min_operators`` operators (with repeats).
        structure_weight: Reward for at least one control structure.
        min_operators: k, the operator count that earns ``size_weight``.
        checker_names: Operators that count as checkers (the verification category).
        format_names: Operators that count as formatting.
        structure_names: Structure kinds that count as control structures.

    Example:
        >>> from flowsteer.canvas.graph import WorkflowGraph
        >>> graph = WorkflowGraph()
        >>> _ = graph.add_operator("Plan")
        >>> _ = graph.add_structure("parallel", ["Programmer", "Custom"])
        >>> _ = graph.add_operator("ScEnsemble")
        >>> _ = graph.add_structure("conditional", ["Verify", "Revise"])
        >>> _ = graph.add_operator("Format")
        >>> reward = StructureReward()
        >>> reward(graph)
        1.0
        >>> reward.components(graph)["div/size"]  # Plan, Programmer, Custom, ScEnsemble, ...
        0.2
    """

    def __init__(
        self,
        checker_weight: float = 0.2,
        format_weight: float = 0.2,
        size_weight: float = 0.2,
        structure_weight: float = 0.4,
        min_operators: int = 6,
        checker_names: tuple[str, ...] = ("Test", "Review", "Verify"),
        format_names: tuple[str, ...] = ("Format",),
        structure_names: tuple[str, ...] = ("parallel", "conditional", "loop"),
    ) -> None:
        weights = (checker_weight, format_weight, size_weight, structure_weight)
        if any(not isinstance(w, int | float) or w < 0 for w in weights):
            raise ValueError(f"structure weights must be non-negative numbers, got {weights}")
        if not isinstance(min_operators, int) or min_operators < 0:
            raise ValueError(f"min_operators must be a non-negative int, got {min_operators!r}")
        self.weights = dict(zip(_PARTS, map(float, weights), strict=True))
        self.min_operators = min_operators
        self.checker_names = frozenset(checker_names)
        self.format_names = frozenset(format_names)
        self.structure_names = frozenset(structure_names)

    @property
    def max_value(self) -> float:
        """R_div of a graph that has every part (1.0 with the default weights)."""
        return sum(self.weights.values())

    def components(self, graph: ScorableGraph) -> dict[str, float]:
        """Each part's earned weight (``div/checker``, ``div/format``, ``div/size``,
        ``div/structure``) and their sum ``div``."""
        for method in ("operator_names", "structure_kinds"):
            if not callable(getattr(graph, method, None)):
                raise TypeError(
                    f"R_div needs a workflow graph with {method}(); got {type(graph).__name__}"
                )
        names = list(graph.operator_names())
        kinds = set(graph.structure_kinds())
        present = {
            "checker": any(n in self.checker_names for n in names),
            "format": any(n in self.format_names for n in names),
            "size": len(names) >= self.min_operators,
            "structure": bool(kinds & self.structure_names),
        }
        parts = {f"div/{p}": self.weights[p] if present[p] else 0.0 for p in _PARTS}
        parts["div"] = sum(parts.values())
        return parts

    def __call__(self, graph: ScorableGraph) -> float:
        """R_div of ``graph``."""
        return self.components(graph)["div"]
