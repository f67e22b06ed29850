"""The operator library: which operators and structures exist, and how the policy reads them.

An `OperatorLibrary` is an ordered, immutable-by-convention registry of `OperatorSpec`s and
`StructureSpec`s. It is plug-and-play (docs/design.md §2): `OperatorLibrary.default()` (the twelve
operators), `from_file("my_library.yaml")` (or a JSON file of the same shape),
`.extend("my_pkg.ops:SQL_SPEC")` (a user's operator by import path), `.restrict([...])`:

    >>> lib = OperatorLibrary.default()
    >>> len(lib), lib.get("programmer").name, lib.checkers
    (12, 'Programmer', ['Test', 'Review', 'Verify'])
    >>> lib.restrict(["Plan", "Programmer", "Format"]).names
    ['Plan', 'Programmer', 'Format']
    >>> print(lib.describe().splitlines()[1])  # d_lib, what the policy reads
    - Plan [planning]: Writes a step-by-step plan for the problem. Never an answer by itself. (problem -> plan)

`extend` and `restrict` return new libraries, so a library shared by many canvases is never
changed under their feet. Lookup is case-insensitive (``lib.get("plan")`` is Plan) and an
unknown name raises `UnknownOperatorError` with a "did you mean" hint.
"""

from __future__ import annotations

import difflib
import importlib
import json
from collections.abc import Iterable, Sequence
from functools import cached_property
from pathlib import Path
from typing import Any

from flowsteer.operators.spec import CATEGORIES, STRUCTURE_KINDS, OperatorSpec, StructureSpec

DEFAULT_LIBRARY_PATH = Path(__file__).with_name("default_library.yaml")


class UnknownOperatorError(LookupError):
    """An operator name the library does not hold; the message lists close matches."""

    def __str__(self) -> str:  # LookupError would repr-quote the message
        return str(self.args[0]) if self.args else ""


class OperatorLibrary:
    """An ordered registry of operators and structures.

    Args:
        operators: The operator specs, in the order d_lib lists them (within a category).
        structures: The control structures the policy may use; by default the three of
            docs/design.md §2 as described in the default library file.
    """

    def __init__(
        self,
        operators: Iterable[OperatorSpec],
        structures: Iterable[StructureSpec] | None = None,
    ) -> None:
        self._operators: dict[str, OperatorSpec] = {}
        for spec in operators:
            key = spec.name.lower()
            if key in self._operators:
                raise ValueError(f"duplicate operator name {spec.name!r}")
            self._operators[key] = spec
        if structures is None:
            structures = _load_mapping(DEFAULT_LIBRARY_PATH)[1]
        self._structures: dict[str, StructureSpec] = {}
        self._unknown_cache: dict[str, str] = {}
        for st in structures:
            if st.name in self._structures:
                raise ValueError(f"duplicate structure {st.name!r}")
            self._structures[st.name] = st

    # ----------------------------------------------------------------- constructors
    @classmethod
    def default(cls) -> OperatorLibrary:
        """The twelve operators and three structures of `default_library.yaml`."""
        return cls.from_file(DEFAULT_LIBRARY_PATH)

    @classmethod
    def from_file(cls, path: str | Path) -> OperatorLibrary:
        """Read a YAML (``.yaml``/``.yml``) or JSON file with ``operators`` and optional
        ``structures`` lists (see `default_library.yaml`). Operators may name an ``impl``."""
        operators, structures = _load_mapping(Path(path))
        return cls(operators, structures if structures else None)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> OperatorLibrary:
        """Build from the mapping a library file holds."""
        operators, structures = _parse_mapping(data, "<dict>")
        return cls(operators, structures if structures else None)

    @classmethod
    def load(cls, ref: str | Path) -> OperatorLibrary:
        """A library named by a config value: a ``.yaml``/``.yml``/``.json`` file (`from_file`),
        or an import path ``"pkg.module:NAME"`` naming an `OperatorLibrary` (or a function
        returning one) or what `extend` takes (the default library plus those operators)."""
        text = str(ref)
        if Path(text).suffix.lower() in (".yaml", ".yml", ".json"):
            if not Path(text).is_file():
                raise ValueError(f"operator library file {text!r} does not exist")
            return cls.from_file(text)
        if ":" not in text:
            raise ValueError(
                f"operator library {text!r} is neither a .yaml/.json file nor an import path "
                "'pkg.module:NAME'"
            )
        module_name, _, attr = text.partition(":")
        try:
            obj = getattr(importlib.import_module(module_name), attr)
        except (ImportError, AttributeError) as exc:
            raise ValueError(f"cannot import operator library {text!r}: {exc}") from exc
        if callable(obj) and not isinstance(obj, type):
            obj = obj()
        if isinstance(obj, OperatorLibrary):
            return obj
        try:
            return cls.default().extend(text)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"operator library {text!r}: {exc}") from exc

    def to_dict(self) -> dict[str, Any]:
        """Inverse of `from_dict`."""
        return {
            "operators": [s.to_dict() for s in self._operators.values()],
            "structures": [s.to_dict() for s in self._structures.values()],
        }

    # --------------------------------------------------------------------- variants
    def extend(self, *items: OperatorSpec | str, replace: bool = False) -> OperatorLibrary:
        """A new library with more operators.

        Args:
            *items: `OperatorSpec`s or import paths ``"pkg.module:NAME"``. The named object may
                be an `OperatorSpec`, a list of them, or a class (or instance) with a ``spec``
                attribute holding one; for a class, the spec's ``impl`` is set to the path so
                the executor can instantiate it.
            replace: Allow an item to replace an operator of the same name (default: error).
        """
        specs = dict(self._operators)
        for item in items:
            for spec in _resolve_item(item):
                key = spec.name.lower()
                if key in specs and not replace:
                    raise ValueError(
                        f"operator {spec.name!r} already exists; pass replace=True to replace it"
                    )
                specs[key] = spec
        return OperatorLibrary(specs.values(), self._structures.values())

    def restrict(
        self, operators: Iterable[str], structures: Iterable[str] | None = None
    ) -> OperatorLibrary:
        """A new library with only the named operators (and structures, if given).

        Args:
            operators: Operator names to keep, case-insensitive; unknown names raise.
            structures: Structure names to keep; ``None`` keeps all of them.
        """
        keep = [self.get(name) for name in operators]
        if structures is None:
            kept_structures = list(self._structures.values())
        else:
            kept_structures = []
            for name in structures:
                if name.lower() not in self._structures:
                    raise UnknownOperatorError(
                        f"unknown structure {name!r}; structures are {sorted(self._structures)}"
                    )
                kept_structures.append(self._structures[name.lower()])
        return OperatorLibrary(keep, kept_structures)

    # ---------------------------------------------------------------------- lookups
    def get(self, name: str) -> OperatorSpec:
        """The operator called `name` (case-insensitive); raises `UnknownOperatorError`."""
        spec = self._operators.get(name.strip().lower()) if isinstance(name, str) else None
        if spec is None:
            raise UnknownOperatorError(self.unknown_message(name))
        return spec

    def find(self, name: str) -> OperatorSpec | None:
        """Like `get` but returns ``None`` for an unknown name."""
        return self._operators.get(name.strip().lower())

    def structure(self, name: str) -> StructureSpec | None:
        """The structure called `name` (case-insensitive), or ``None``."""
        return self._structures.get(name.strip().lower())

    def suggest(self, name: str, n: int = 3) -> list[str]:
        """Up to `n` operator names close to `name`, best first."""
        by_lower = {s.name.lower(): s.name for s in self._operators.values()}
        close = difflib.get_close_matches(name.strip().lower(), list(by_lower), n=n, cutoff=0.5)
        return [by_lower[c] for c in close]

    def unknown_message(self, name: str) -> str:
        """The message for an unknown operator name: close matches, else the full list.
        Memoised (bounded): policies repeat the same misspellings."""
        cache = self._unknown_cache
        msg = cache.get(name)
        if msg is None:
            close = self.suggest(str(name))
            if close:
                msg = f"unknown operator {name!r}; did you mean {' or '.join(close)}?"
            else:
                msg = f"unknown operator {name!r}; operators are {', '.join(self.names)}"
            if len(cache) < 4096:
                cache[name] = msg
        return msg

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and name.strip().lower() in self._operators

    def __iter__(self):
        return iter(self._operators.values())

    def __len__(self) -> int:
        return len(self._operators)

    def __repr__(self) -> str:
        return f"OperatorLibrary({self.names}, structures={list(self._structures)})"

    @property
    def names(self) -> list[str]:
        """Operator names in library order."""
        return [s.name for s in self._operators.values()]

    @property
    def structures(self) -> list[StructureSpec]:
        """The structures, in library order."""
        return list(self._structures.values())

    @property
    def checkers(self) -> list[str]:
        """Names of the verification operators (valid conditional conditions)."""
        return [s.name for s in self._operators.values() if s.is_checker]

    # ------------------------------------------------------------------------ d_lib
    @cached_property
    def _description(self) -> str:
        lines = ["Operators (name [category]: what it does; reads -> writes):"]
        for category in CATEGORIES:
            for spec in self._operators.values():
                if spec.category == category:
                    lines.append(
                        f"- {spec.name} [{category}]: {spec.description} "
                        f"({', '.join(spec.inputs)} -> {', '.join(spec.outputs)})"
                    )
        if self._structures:
            lines.append("Structures:")
            for st in self._structures.values():
                lines.append(f"- {st.name} `{st.syntax}`: {st.description}")
        return "\n".join(lines)

    def describe(self) -> str:
        """d_lib: the library as the policy reads it, grouped by category (deterministic)."""
        return self._description


# ---------------------------------------------------------------------------- helpers
def _load_mapping(path: Path) -> tuple[list[OperatorSpec], list[StructureSpec]]:
    text = path.read_text(encoding="utf-8")
    try:
        if path.suffix.lower() == ".json":
            data = json.loads(text)
        else:
            import yaml

            data = yaml.safe_load(text)
    except Exception as exc:  # yaml.YAMLError / json.JSONDecodeError: name the file
        raise ValueError(f"cannot read operator library {path}: {exc}") from exc
    return _parse_mapping(data, str(path))


def _parse_mapping(data: Any, origin: str) -> tuple[list[OperatorSpec], list[StructureSpec]]:
    if not isinstance(data, dict) or not isinstance(data.get("operators"), list):
        raise ValueError(f"{origin}: a library needs a top-level 'operators' list")
    unknown = set(data) - {"operators", "structures"}
    if unknown:
        raise ValueError(f"{origin}: unknown top-level keys {sorted(unknown)}")
    try:
        operators = [OperatorSpec.from_dict(dict(o)) for o in data["operators"]]
        structures = [StructureSpec.from_dict(dict(s)) for s in data.get("structures") or []]
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{origin}: {exc}") from exc
    return operators, structures


def _resolve_item(item: OperatorSpec | str) -> Sequence[OperatorSpec]:
    if isinstance(item, OperatorSpec):
        return [item]
    if not isinstance(item, str) or ":" not in item:
        raise TypeError(f"expected an OperatorSpec or a 'pkg.module:NAME' path, got {item!r}")
    module_name, _, attr = item.partition(":")
    try:
        obj = getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError) as exc:
        raise ValueError(f"cannot import operator {item!r}: {exc}") from exc
    if isinstance(obj, OperatorSpec):
        return [obj]
    if isinstance(obj, (list, tuple)) and all(isinstance(o, OperatorSpec) for o in obj):
        return list(obj)
    spec = getattr(obj, "spec", None)
    if isinstance(spec, OperatorSpec):
        if isinstance(obj, type) and spec.impl is None:
            spec = OperatorSpec(**{**spec.__dict__, "impl": item})
        return [spec]
    raise TypeError(
        f"{item!r} is neither an OperatorSpec, a list of them, nor a class with a `spec` attribute"
    )


__all__ = ["DEFAULT_LIBRARY_PATH", "STRUCTURE_KINDS", "OperatorLibrary", "UnknownOperatorError"]
