"""Record parser for AIME (e.g. AIME 2025): a problem whose answer is an integer from 0 to 999."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from flowsteer.tasks.record import RecordError, str_field
from flowsteer.tasks.task import Task

_INTEGER_RE = re.compile(r"^\s*\d+\s*$")


def parse_aime(record: Mapping[str, Any], task_id: str) -> Task:
    """AIME: ``problem`` and ``answer`` (an integer 0-999, as a number or a string of digits),
    optional ``id`` and ``solution``. The gold is the integer without leading zeros."""
    problem = str_field(record, "problem")
    raw = record.get("answer")
    if raw is None:
        raise RecordError("answer", "missing")
    if isinstance(raw, bool) or not isinstance(raw, int | str):
        raise RecordError("answer", f"expected an integer, got {type(raw).__name__}")
    if isinstance(raw, str) and not _INTEGER_RE.match(raw):
        raise RecordError("answer", f"{raw!r} is not an integer")
    value = int(raw)
    if not 0 <= value <= 999:
        raise RecordError("answer", f"{value} is outside AIME's 0-999")
    meta = {"solution": record["solution"]} if isinstance(record.get("solution"), str) else {}
    rid = record.get("id")
    tid = f"aime/{rid}" if rid is not None and str(rid).strip() else task_id
    return Task(tid, "aime", "math", problem, str(value), meta=meta)
