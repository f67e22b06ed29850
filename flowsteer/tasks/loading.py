"""`load_tasks`: read a dataset in its native schema, from a local file or a hub name, into Tasks.

Reading goes through the ``datasets`` library (json, jsonl, jsonl.gz, parquet, or a hub dataset
already in the local cache), so a user's own files in any of those formats load the same way. Bad
records are reported with file, record index and field; ``on_error="skip"`` drops them and
reports how many were dropped instead. A field a parser does not find (``KeyError``) or that
`Task` rejects (`TaskFieldError`) is a bad record like any other.

Local files are read quietly (no progress bar) through a temporary ``datasets`` cache that is
deleted afterwards, so loading a file never writes to the user's datasets cache. A JSON Lines
file with a malformed line fails as a whole in ``datasets``; with ``on_error="skip"`` it is
then read line by line and only the bad lines are dropped (a line that is not UTF-8 too); a
JSON array file is read whole and only its bad records are dropped. A file with no records
is an error; a file that is not UTF-8 is one too, naming the file.
"""

from __future__ import annotations

import contextlib
import gzip
import json
import logging
import tempfile
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from flowsteer.tasks.sources import SOURCES, RecordError
from flowsteer.tasks.task import Task, TaskFieldError

log = logging.getLogger(__name__)

_JSON_SUFFIXES = (".json", ".jsonl", ".json.gz", ".jsonl.gz")
_PARQUET_SUFFIXES = (".parquet",)


class TaskFormatError(ValueError):
    """A record or file that cannot be read as the named source; says where and what."""

    def __init__(self, where: str, index: int | None, field: str | None, problem: str) -> None:
        parts = [where]
        if index is not None:
            parts.append(f"record {index}")
        if field is not None:
            parts.append(f"field {field!r}")
        super().__init__(": ".join([*parts, problem]))
        self.where, self.index, self.field, self.problem = where, index, field, problem


@dataclass(frozen=True)
class _BadLine:
    """A JSON Lines line that does not parse (only yielded when bad records are skipped)."""

    problem: str


@dataclass
class LoadResult:
    """The tasks read, in file order, and the errors of the records that were skipped."""

    tasks: list[Task]
    skipped: list[TaskFormatError] = field(default_factory=list)


def read_tasks(
    source: str,
    path_or_name: str | Path,
    split: str | None = None,
    limit: int | None = None,
    on_error: Literal["raise", "skip"] = "raise",
) -> LoadResult:
    """Like `load_tasks`, but also returns the skipped records' errors."""
    if source not in SOURCES:
        raise ValueError(f"unknown task source {source!r}; known: {', '.join(sorted(SOURCES))}")
    if on_error not in ("raise", "skip"):
        raise ValueError(f"on_error must be 'raise' or 'skip', got {on_error!r}")
    if limit is not None and limit < 0:
        raise ValueError(f"limit must be >= 0, got {limit}")
    parser = SOURCES[source].parse
    where, records = _open(path_or_name, split, on_error)
    prefix = f"{source}/{split}" if split else source
    result = LoadResult([])
    for index, record in enumerate(records):
        if limit is not None and len(result.tasks) >= limit:
            break
        try:
            if isinstance(record, _BadLine):
                raise RecordError("<record>", record.problem)
            if not isinstance(record, Mapping):
                raise RecordError("<record>", f"expected an object, got {type(record).__name__}")
            result.tasks.append(parser(record, f"{prefix}/{index}"))
        except (RecordError, TaskFieldError, KeyError) as err:
            if isinstance(err, KeyError):
                error = TaskFormatError(
                    where, index, str(err.args[0] if err.args else ""), "missing"
                )
            else:
                field = None if err.field == "<record>" else err.field
                error = TaskFormatError(where, index, field, err.problem)
            if on_error == "raise":
                raise error from None
            result.skipped.append(error)
    if result.skipped:
        log.warning(
            "%s: skipped %d bad record(s) of %s; first: %s",
            where, len(result.skipped), source, result.skipped[0],
        )  # fmt: skip
    return result


def load_tasks(
    source: str,
    path_or_name: str | Path,
    split: str | None = None,
    limit: int | None = None,
    on_error: Literal["raise", "skip"] = "raise",
) -> list[Task]:
    """Read ``source``'s native records into Tasks, in file order.

    Args:
        source: A registered source: gsm8k, math, hotpotqa, squad_v2, mbpp, humaneval, or one
            added with `register_source`.
        path_or_name: A local file (.json, .jsonl, .jsonl.gz, .parquet), a directory holding
            one file per split (``test.jsonl``, ``train-00000.parquet``, ...), or a hub dataset
            name (read through ``datasets.load_dataset``; offline, it must already be cached).
        split: Which split to read from a directory or hub dataset; part of each task id.
        limit: Read at most this many tasks.
        on_error: ``"raise"`` stops at the first bad record with a `TaskFormatError` naming
            file, record index and field; ``"skip"`` drops bad records and logs how many.

    Example:
        >>> tasks = load_tasks("gsm8k", "path/to/gsm8k/test.jsonl")  # doctest: +SKIP
        >>> tasks[0].answer  # doctest: +SKIP
        '18'
    """
    return read_tasks(source, path_or_name, split, limit, on_error).tasks


# --------------------------------------------------------------------------- reading


def _open(
    path_or_name: str | Path, split: str | None, on_error: str = "raise"
) -> tuple[str, Iterator[Any]]:
    path = Path(path_or_name).expanduser()
    if path.is_dir():
        path = _split_file(path, split)
    if path.is_file():
        return str(path), _read_file(path, skip_bad_lines=on_error == "skip")
    text = str(path_or_name)
    if text.endswith(_JSON_SUFFIXES + _PARQUET_SUFFIXES) or text.startswith((".", "/", "~")):
        raise FileNotFoundError(f"no such dataset file: {path_or_name}")
    return str(path_or_name), _read_hub(str(path_or_name), split)


def _split_file(directory: Path, split: str | None) -> Path:
    files = sorted(
        p for p in directory.iterdir() if p.name.endswith(_JSON_SUFFIXES + _PARQUET_SUFFIXES)
    )
    if split is not None:
        files = [p for p in files if p.name.split(".")[0].split("-")[0] == split]
    if len(files) != 1:
        names = ", ".join(p.name for p in files) or "none"
        raise FileNotFoundError(
            f"{directory}: expected exactly one data file for split {split!r}, found {names}"
        )
    return files[0]


def _read_file(path: Path, skip_bad_lines: bool = False) -> Iterator[Any]:
    import datasets

    if path.name.endswith(_PARQUET_SUFFIXES):
        builder = "parquet"
    elif path.name.endswith(_JSON_SUFFIXES):
        builder = "json"
    else:
        raise TaskFormatError(
            str(path),
            None,
            None,
            f"unsupported file type; use one of {_JSON_SUFFIXES + _PARQUET_SUFFIXES}",
        )
    if builder == "json":
        blank, bad_line = _scan_text(path)
        if blank:
            raise TaskFormatError(str(path), None, None, "the file is empty: it holds no records")
        if bad_line is not None:  # pyarrow reads such bytes, and iterating then raises
            if skip_bad_lines and _is_json_lines(path):
                return _read_json_lines(path)
            raise TaskFormatError(str(path), None, None, f"line {bad_line} is not UTF-8 text")
    try:
        with _private_quiet_cache() as cache_dir:
            ds = datasets.load_dataset(
                builder, data_files=str(path), split="train", cache_dir=cache_dir,
                keep_in_memory=True,
            )  # fmt: skip
    except Exception as err:  # pyarrow/datasets errors carry no record index: find it ourselves
        if builder == "json" and skip_bad_lines:
            if _is_json_lines(path):
                return _read_json_lines(path)
            records = _read_json_array(path)
            if records is not None:  # valid JSON: the records that are bad get skipped
                return iter(records)
        if builder == "json":
            _diagnose_json(path)
        raise TaskFormatError(str(path), None, None, f"cannot read as {builder}: {err}") from err
    if len(ds) == 0:
        raise TaskFormatError(str(path), None, None, "the file holds no records")
    return iter(ds)


@contextlib.contextmanager
def _private_quiet_cache() -> Iterator[str]:
    """A temporary datasets cache (deleted on exit) with progress bars and logs off."""
    from datasets.utils import logging as ds_logging

    bars = ds_logging.is_progress_bar_enabled()
    verbosity = ds_logging.get_verbosity()
    ds_logging.disable_progress_bar()
    ds_logging.set_verbosity(ds_logging.CRITICAL)  # a file we cannot read is our error to report
    try:
        with tempfile.TemporaryDirectory(prefix="flowsteer-datasets-") as cache_dir:
            yield cache_dir
    finally:
        ds_logging.set_verbosity(verbosity)
        if bars:
            ds_logging.enable_progress_bar()


def _read_text(path: Path) -> str:
    """The whole file as text; a file that is not UTF-8 is a `TaskFormatError` naming it."""
    with gzip.open(path, "rb") if path.suffix == ".gz" else open(path, "rb") as f:
        data = f.read()
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as err:
        raise TaskFormatError(
            str(path), None, None, f"not UTF-8 text (byte {err.start}: {err.reason})"
        ) from None


def _scan_text(path: Path) -> tuple[bool, int | None]:
    """Whether a file holds only whitespace, and its first line that is not UTF-8 (if any)."""
    blank = True
    with gzip.open(path, "rb") if path.suffix == ".gz" else open(path, "rb") as f:
        for number, raw in enumerate(f, 1):
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError:
                return False, number
            blank = blank and not line.strip()
    return blank, None


def _is_json_lines(path: Path) -> bool:
    if path.name.endswith((".jsonl", ".jsonl.gz")):
        return True
    with gzip.open(path, "rb") if path.suffix == ".gz" else open(path, "rb") as f:
        return not f.read(1 << 16).lstrip().startswith(b"[")


def _read_json_array(path: Path) -> list[Any] | None:
    """The records of a JSON file holding one array (or one object), or ``None`` when the
    file is not valid JSON."""
    try:
        data = json.loads(_read_text(path))
    except json.JSONDecodeError:
        return None
    return data if isinstance(data, list) else [data]


def _read_json_lines(path: Path) -> Iterator[Any]:
    """Records of a JSON Lines file, one per non-blank line; a line that does not parse (or
    is not UTF-8) gives a `_BadLine` in its place so the caller can skip it and say which."""
    with gzip.open(path, "rb") if path.suffix == ".gz" else open(path, "rb") as f:
        for number, raw in enumerate(f, 1):
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as err:
                yield _BadLine(f"not UTF-8 text (line {number}, byte {err.start})")
                continue
            if not line.strip():
                continue
            try:
                yield json.loads(line)
            except json.JSONDecodeError as err:
                yield _BadLine(f"invalid JSON (line {number}): {err}")


def _read_hub(name: str, split: str | None) -> Iterator[Any]:
    import datasets

    try:
        ds = datasets.load_dataset(name, split=split or "train")
    except Exception as err:
        raise TaskFormatError(
            name, None, None,
            f"not a local file and not loadable as a hub dataset ({type(err).__name__}: {err}); "
            "offline, a hub dataset must already be in the local datasets cache",
        ) from err  # fmt: skip
    return iter(ds)


def _diagnose_json(path: Path) -> None:
    """Find the record that made a JSON file unreadable: bad syntax, or a field whose type
    differs from the first record's (Arrow needs one type per column)."""
    text = _read_text(path)
    if path.name.endswith((".jsonl", ".jsonl.gz")) or not text.lstrip().startswith("["):
        records = []
        for number, line in enumerate(text.splitlines(), 1):
            if not line.strip():
                continue
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError as err:  # the record index skips blank lines
                raise TaskFormatError(
                    str(path), len(records), None, f"invalid JSON (line {number}): {err}"
                ) from None
    else:
        try:
            records = json.loads(text)
        except json.JSONDecodeError as err:
            raise TaskFormatError(str(path), None, None, f"invalid JSON: {err}") from None
    seen: dict[str, str] = {}
    for index, record in enumerate(records):
        if not isinstance(record, dict):
            raise TaskFormatError(
                str(path), index, None, f"expected an object, got {type(record).__name__}"
            )
        for key, value in record.items():
            kind = type(value).__name__
            if value is None:
                continue
            if seen.setdefault(key, kind) != kind:
                raise TaskFormatError(
                    str(path),
                    index,
                    key,
                    f"expected {seen[key]} (as in earlier records), got {kind}",
                )
