"""Reading one native record: the error that names its field, and typed field accessors.

Every source parser raises `RecordError`; the loader adds the file and record index. Its own
module so the parsers and the source registry can both import it without importing each other.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


class RecordError(ValueError):
    """A record that does not fit its source's schema; `field` names the culprit."""

    def __init__(self, field: str, problem: str) -> None:
        super().__init__(f"field {field!r}: {problem}")
        self.field = field
        self.problem = problem


def str_field(record: Mapping[str, Any], field: str, *, allow_empty: bool = False) -> str:
    if field not in record or record[field] is None:
        raise RecordError(field, "missing")
    value = record[field]
    if not isinstance(value, str):
        raise RecordError(field, f"expected a string, got {type(value).__name__}")
    if not allow_empty and not value.strip():
        raise RecordError(field, "empty")
    return value


def str_list_field(record: Mapping[str, Any], field: str, *, required: bool = True) -> list[str]:
    value = record.get(field)
    if value is None:
        if required:
            raise RecordError(field, "missing")
        return []
    if not isinstance(value, list | tuple) or not all(isinstance(v, str) for v in value):
        raise RecordError(field, f"expected a list of strings, got {type(value).__name__}")
    return list(value)


def first_present(record: Mapping[str, Any], *fields: str) -> str:
    for field in fields:
        if record.get(field) is not None:
            return field
    raise RecordError(fields[0], f"missing (looked for {' or '.join(repr(f) for f in fields)})")


__all__ = ["RecordError", "first_present", "str_field", "str_list_field"]
