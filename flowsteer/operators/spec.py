"""What an operator *is* to the canvas and the policy: a name, a category, a description.

`OperatorSpec` is pure data. It carries no behaviour: the prompt template, the output parser and
the backend calls live in an implementation class (issue 4) that is attached by name through
`impl`, an import path such as ``"flowsteer.operators.programmer:ProgrammerOperator"``. Keeping
the two apart lets the canvas validate and describe workflows without importing any backend.

`StructureSpec` describes a control structure (parallel, conditional, loop) the same way.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

Category = Literal["planning", "solving", "verification", "revision", "ensemble", "formatting"]
CATEGORIES: tuple[str, ...] = (
    "planning",
    "solving",
    "verification",
    "revision",
    "ensemble",
    "formatting",
)

StructureKind = Literal["parallel", "conditional", "loop"]
STRUCTURE_KINDS: tuple[str, ...] = ("parallel", "conditional", "loop")


@dataclass(frozen=True)
class OperatorSpec:
    """One operator of the library.

    Attributes:
        name: Unique, case-insensitively, within a library; CamelCase by convention (``Plan``).
        category: One of `CATEGORIES`; decides what the canvas allows (a conditional needs a
            ``verification`` operator as its condition; an ``ensemble`` operator needs
            candidates to choose from).
        description: One or two sentences the policy reads in d_lib.
        inputs: Names of what the operator reads (``problem``, ``candidate``, ``feedback``, ...).
        outputs: Names of what it produces (``plan``, ``answer``, ``verdict``, ...).
        default_prompt: The instruction used when the policy leaves a node's prompt empty.
        impl: Optional import path ``"pkg.module:Class"`` of the implementation; ``None`` lets
            the executor look it up by `name` in its own registry.
    """

    name: str
    category: Category
    description: str
    inputs: tuple[str, ...] = ("problem",)
    outputs: tuple[str, ...] = ("answer",)
    default_prompt: str = ""
    impl: str | None = None

    def __post_init__(self) -> None:
        if not self.name or not self.name.replace("_", "").isalnum():
            raise ValueError(f"operator name must be a non-empty identifier, got {self.name!r}")
        if self.category not in CATEGORIES:
            raise ValueError(
                f"operator {self.name!r}: category must be one of {CATEGORIES}, got {self.category!r}"
            )
        # Accept lists from YAML/JSON but store tuples so the spec stays hashable.
        object.__setattr__(self, "inputs", tuple(self.inputs))
        object.__setattr__(self, "outputs", tuple(self.outputs))

    @property
    def is_checker(self) -> bool:
        """A checker returns pass/fail plus feedback and may be a conditional's condition."""
        return self.category == "verification"

    def to_dict(self) -> dict[str, Any]:
        """A YAML/JSON-serialisable form, inverse of `from_dict`."""
        data: dict[str, Any] = {
            "name": self.name,
            "category": self.category,
            "description": self.description,
            "inputs": list(self.inputs),
            "outputs": list(self.outputs),
            "default_prompt": self.default_prompt,
        }
        if self.impl is not None:
            data["impl"] = self.impl
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> OperatorSpec:
        """Build from a mapping; unknown keys are an error so typos in configs surface."""
        unknown = set(data) - set(cls.__dataclass_fields__)
        if unknown:
            raise ValueError(f"operator {data.get('name')!r}: unknown keys {sorted(unknown)}")
        return cls(**data)


@dataclass(frozen=True)
class StructureSpec:
    """One control structure: how the policy writes it and what it means.

    Attributes:
        name: One of `STRUCTURE_KINDS`.
        description: What the policy reads in d_lib.
        syntax: Its DSL form, e.g. ``[A, B, ...]``.
    """

    name: StructureKind
    description: str
    syntax: str = ""

    def __post_init__(self) -> None:
        if self.name not in STRUCTURE_KINDS:
            raise ValueError(f"structure must be one of {STRUCTURE_KINDS}, got {self.name!r}")

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "description": self.description, "syntax": self.syntax}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> StructureSpec:
        unknown = set(data) - {"name", "description", "syntax"}
        if unknown:
            raise ValueError(f"structure {data.get('name')!r}: unknown keys {sorted(unknown)}")
        return cls(**data)
