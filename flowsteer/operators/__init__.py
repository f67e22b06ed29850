"""Operators: what the canvas may place (specs and the library the policy reads).

Implementations (prompt + parser + backend calls) live in sibling modules and are attached to a
spec by name or by its ``impl`` import path.
"""

from flowsteer.operators.library import DEFAULT_LIBRARY_PATH, OperatorLibrary, UnknownOperatorError
from flowsteer.operators.spec import (
    CATEGORIES,
    STRUCTURE_KINDS,
    Category,
    OperatorSpec,
    StructureKind,
    StructureSpec,
)

__all__ = [
    "CATEGORIES",
    "DEFAULT_LIBRARY_PATH",
    "STRUCTURE_KINDS",
    "Category",
    "OperatorLibrary",
    "OperatorSpec",
    "StructureKind",
    "StructureSpec",
    "UnknownOperatorError",
]
