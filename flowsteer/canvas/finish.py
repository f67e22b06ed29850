"""What a workflow must contain before the canvas accepts ``finish`` (the finish constraints).

Its own module because both the canvas (which enforces it) and the system prompt (which states
it) need it, and neither should import the other for it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from flowsteer.canvas.graph import WorkflowGraph
    from flowsteer.operators.library import OperatorLibrary


@dataclass(frozen=True)
class FinishConstraints:
    """What a workflow needs before ``finish`` is accepted; a rejected finish lists the gaps.

    Args:
        min_operators: Minimum number of operator nodes (inside structures included).
        require_checker: Need a verification operator (Test, Review, Verify).
        require_structure: Need a parallel, conditional or loop.
        require_format: Need a Format operator (a ``formatting`` category operator).
    """

    min_operators: int = 1
    require_checker: bool = False
    require_structure: bool = False
    require_format: bool = False

    def violations(self, graph: WorkflowGraph, library: OperatorLibrary) -> list[str]:
        """What is missing, as phrases for the feedback (``[]``: finish is allowed)."""
        ops = graph.operator_names()
        categories = {library.get(n).category for n in ops if n in library}
        out = []
        if len(ops) < self.min_operators:
            out.append(f"at least {self.min_operators} operators (it has {len(ops)})")
        if self.require_checker and "verification" not in categories:
            out.append(f"a checker ({', '.join(library.checkers)})")
        if self.require_structure and not graph.structure_kinds():
            out.append("a structure (parallel, conditional or loop)")
        if self.require_format and "formatting" not in categories:
            out.append("a Format operator")
        return out

    def describe(self) -> str:
        """One line for the system prompt."""
        parts = [f"at least {self.min_operators} operator(s)"]
        if self.require_checker:
            parts.append("a checker")
        if self.require_structure:
            parts.append("a structure")
        if self.require_format:
            parts.append("Format")
        return ", ".join(parts)
