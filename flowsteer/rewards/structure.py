"""R_div: the diversity-constrained structure reward over the final workflow graph.

    R_div = w_checker·[has checker] + w_format·[has Format]
            + w_size·[#operators ≥ k] + w_structure·[has parallel / conditional / loop]

Defaults 0.2 / 0.2 / 0.2 / 0.4 (docs/design.md §4). Operators are counted with
repeats and including those inside structures (what `WorkflowGraph.operator_names` lists), so
a checker that is the condition of a conditional counts as a checker. The default ``k = 6`` is
the value in the authors' public implementation (``min_operators_for_score = 6`` in
``src/interactive/trajectory_reward.py`` of beita6969/FlowSteer); the paper text we could read
does not state it.

Which operators are checkers and formatters is read from an `OperatorLibrary`, by category
(``verification``, ``formatting``), exactly as the canvas decides what a conditional's
condition may be and what ``finish`` requires. A plug-in checker therefore earns the checker
part. The library must be the one the canvas used: give it once (``StructureReward(library=
...)``) or per call (``library=canvas.library``; `WorkflowReward.score_canvas` does this for
you). An operator name the library does not hold raises `ValueError` instead of silently
scoring 0, since it means the reward and the canvas disagree about the library.

The reward reads only ``operator_names()`` and ``structure_kinds()``, so any graph type with
those two methods (the `WorkflowGraph`, a test stand-in) can be scored.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from flowsteer.operators.library import OperatorLibrary

_PARTS = ("checker", "format", "size", "structure")
CHECKER_CATEGORY = "verification"
FORMAT_CATEGORY = "formatting"


class ScorableGraph(Protocol):
    """What R_div needs from a workflow graph."""

    def operator_names(self) -> list[str]: ...

    def structure_kinds(self) -> list[str]: ...


class StructureReward:
    """R_div of a workflow graph, with its four parts named for logging.

    Args:
        checker_weight: Reward for at least one checker (``verification`` category) operator.
        format_weight: Reward for at least one ``formatting`` category operator.
        size_weight: Reward for at least ``min_operators`` operators (with repeats).
        structure_weight: Reward for at least one control structure.
        min_operators: k, the operator count that earns ``size_weight``.
        library: The operator library whose categories classify operators; it must be the
            canvas's. ``None``: the default twelve operators. A call may pass its own.
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
        library: OperatorLibrary | None = None,
        structure_names: tuple[str, ...] = ("parallel", "conditional", "loop"),
    ) -> None:
        weights = (checker_weight, format_weight, size_weight, structure_weight)
        if any(not isinstance(w, int | float) or w < 0 for w in weights):
            raise ValueError(f"structure weights must be non-negative numbers, got {weights}")
        if not isinstance(min_operators, int) or min_operators < 0:
            raise ValueError(f"min_operators must be a non-negative int, got {min_operators!r}")
        if library is not None and not callable(getattr(library, "find", None)):
            raise TypeError(f"library must be an OperatorLibrary, got {type(library).__name__}")
        self.weights = dict(zip(_PARTS, map(float, weights), strict=True))
        self.min_operators = min_operators
        self.library = library
        self.structure_names = frozenset(structure_names)

    @property
    def max_value(self) -> float:
        """R_div of a graph that has every part (1.0 with the default weights)."""
        return sum(self.weights.values())

    def components(
        self, graph: ScorableGraph, library: OperatorLibrary | None = None
    ) -> dict[str, float]:
        """Each part's earned weight (``div/checker``, ``div/format``, ``div/size``,
        ``div/structure``) and their sum ``div``.

        Args:
            graph: The final workflow.
            library: The canvas's operator library for this graph; ``None``: the reward's own.

        Raises:
            ValueError: An operator of `graph` is not in the library (the reward and the
                canvas use different libraries).
        """
        for method in ("operator_names", "structure_kinds"):
            if not callable(getattr(graph, method, None)):
                raise TypeError(
                    f"R_div needs a workflow graph with {method}(); got {type(graph).__name__}"
                )
        lib = library if library is not None else self.library
        if lib is None:
            lib = _default_library()
        names = list(graph.operator_names())
        categories = set()
        for name in names:
            spec = lib.find(name)
            if spec is None:
                raise ValueError(
                    f"R_div: operator {name!r} is not in the operator library the reward reads "
                    f"({', '.join(lib.names)}); score with the canvas's library: "
                    "WorkflowReward.score_canvas(canvas), library=canvas.library, or "
                    "StructureReward(library=...)"
                )
            categories.add(spec.category)
        kinds = set(graph.structure_kinds())
        present = {
            "checker": CHECKER_CATEGORY in categories,
            "format": FORMAT_CATEGORY in categories,
            "size": len(names) >= self.min_operators,
            "structure": bool(kinds & self.structure_names),
        }
        parts = {f"div/{p}": self.weights[p] if present[p] else 0.0 for p in _PARTS}
        parts["div"] = sum(parts.values())
        return parts

    def __call__(self, graph: ScorableGraph, library: OperatorLibrary | None = None) -> float:
        """R_div of ``graph`` (``library``: as in `components`)."""
        return self.components(graph, library)["div"]


_DEFAULT: OperatorLibrary | None = None


def _default_library() -> OperatorLibrary:
    """The default library, read once per process (it is immutable)."""
    global _DEFAULT
    if _DEFAULT is None:
        from flowsteer.operators.library import OperatorLibrary

        _DEFAULT = OperatorLibrary.default()
    return _DEFAULT
