"""Which implementation runs an operator: the built-in registry, or the spec's ``impl``.

An `OperatorSpec` is pure data; `build_operator` attaches behaviour. A spec whose ``impl``
names a class (``"my_pkg.ops:SQLOperator"``) gets that class, so a user's operator plugs in
through the library file alone; otherwise the spec's name is looked up (case-insensitively)
among the twelve built-in implementations. A class that derives from `Operator` is built with
the executor's `OperatorSettings`; any other class is built without arguments and only needs
an ``async run(state, prompt, llm) -> OperatorOutput`` method.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from flowsteer.operators.base import Operator, OperatorSettings
from flowsteer.operators.ensemble import AggregateOperator, ScEnsembleOperator
from flowsteer.operators.formatting import FormatOperator
from flowsteer.operators.planning import DecomposeOperator, PlanOperator
from flowsteer.operators.revision import ReviseOperator
from flowsteer.operators.solving import AnswerGenerateOperator, CustomOperator, ProgrammerOperator
from flowsteer.operators.verification import ReviewOperator, TestOperator, VerifyOperator

if TYPE_CHECKING:
    from flowsteer.operators.spec import OperatorSpec

BUILTIN_OPERATORS: dict[str, type[Operator]] = {
    cls.name.lower(): cls
    for cls in (
        PlanOperator,
        DecomposeOperator,
        ProgrammerOperator,
        CustomOperator,
        AnswerGenerateOperator,
        TestOperator,
        ReviewOperator,
        VerifyOperator,
        ReviseOperator,
        ScEnsembleOperator,
        AggregateOperator,
        FormatOperator,
    )
}
"""The built-in implementations by lower-cased operator name."""


class OperatorImplError(LookupError):
    """No implementation can be found or built for an operator spec."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


def operator_class(spec: OperatorSpec) -> type[Any]:
    """The implementation class of `spec` (its ``impl``, else the built-in of that name).

    Raises:
        OperatorImplError: The ``impl`` path does not import, or no built-in has that name.
    """
    if spec.impl:
        module_name, _, attr = spec.impl.partition(":")
        if not attr:
            raise OperatorImplError(
                f"operator {spec.name!r}: impl must look like 'pkg.module:Class', got {spec.impl!r}"
            )
        try:
            cls = getattr(importlib.import_module(module_name), attr)
        except (ImportError, AttributeError) as exc:
            raise OperatorImplError(
                f"operator {spec.name!r}: cannot import impl {spec.impl!r}: {exc}"
            ) from exc
        if not isinstance(cls, type) or not callable(getattr(cls, "run", None)):
            raise OperatorImplError(
                f"operator {spec.name!r}: impl {spec.impl!r} is not a class with a run() method"
            )
        return cls
    cls = BUILTIN_OPERATORS.get(spec.name.lower())
    if cls is None:
        raise OperatorImplError(
            f"operator {spec.name!r} has no implementation: give its spec an impl "
            f"'pkg.module:Class', or use one of {sorted(c.name for c in BUILTIN_OPERATORS.values())}"
        )
    return cls


def build_operator(spec: OperatorSpec, settings: OperatorSettings | None = None) -> Any:
    """An instance of `spec`'s implementation (see the module docstring)."""
    cls = operator_class(spec)
    if issubclass(cls, Operator):
        return cls(settings)
    try:
        return cls()
    except Exception as exc:
        raise OperatorImplError(
            f"operator {spec.name!r}: cannot build {cls.__name__}(): {exc}"
        ) from exc


__all__ = ["BUILTIN_OPERATORS", "OperatorImplError", "build_operator", "operator_class"]
