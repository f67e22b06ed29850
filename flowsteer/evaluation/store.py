"""`EpisodeStore`: ``episodes.jsonl`` in an evaluation's out dir, written so a kill loses at most
the episode in flight.

Each finished episode is appended as one JSON line and flushed (and fsynced) at once. On open,
the records already there are read back; a torn last line (the process died mid-write) is
dropped and cut from the file, so the resumed run appends after the last whole record. A bad
line anywhere else is an error: that file was not written by this store.

The store also keeps ``fingerprint.json``: the settings that decide the results (policy, backend,
sampling, datasets, systems). A store opened with other settings refuses, naming the first
setting that differs, so one report never mixes two evaluations.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from flowsteer.evaluation.record import EpisodeRecord

EPISODES_FILE = "episodes.jsonl"
FINGERPRINT_FILE = "fingerprint.json"


class FingerprintMismatch(ValueError):
    """The out dir holds episodes of an evaluation with other settings."""


def _first_difference(old: Any, new: Any, where: str = "") -> str | None:
    if isinstance(old, dict) and isinstance(new, dict):
        for key in sorted(set(old) | set(new)):
            path = f"{where}.{key}" if where else str(key)
            if key not in old or key not in new:
                return path
            found = _first_difference(old[key], new[key], path)
            if found is not None:
                return found
        return None
    return None if old == new else (where or "(all)")


class EpisodeStore:
    """The episodes of one evaluation, on disk, appended one by one.

    Args:
        out_dir: The report directory (created if missing).
        settings: The fingerprint: a JSON-ready dict of everything that decides the results.
    """

    def __init__(self, out_dir: str | Path, settings: dict[str, Any]) -> None:
        self.out_dir = Path(out_dir)
        self.out_dir.mkdir(parents=True, exist_ok=True)
        self.path = self.out_dir / EPISODES_FILE
        self.settings = json.loads(json.dumps(settings, sort_keys=True))
        self._check_fingerprint()
        self.records: list[EpisodeRecord] = self._read()
        self._done = {r.key for r in self.records}

    def _check_fingerprint(self) -> None:
        file = self.out_dir / FINGERPRINT_FILE
        if file.is_file():
            try:
                old = json.loads(file.read_text())
            except ValueError:
                raise FingerprintMismatch(f"{file} is not valid JSON; remove the out dir") from None
            differs = _first_difference(old, self.settings)
            if differs is not None:
                raise FingerprintMismatch(
                    f"{self.out_dir} holds an evaluation with another setting ({differs}: "
                    f"{_at(old, differs)!r} there, {_at(self.settings, differs)!r} now); "
                    "choose another --out or remove it"
                )
        elif self.path.is_file() and self.path.stat().st_size > 0:
            raise FingerprintMismatch(
                f"{self.path} exists without {FINGERPRINT_FILE}: not written by this evaluation; "
                "choose another --out"
            )
        else:
            file.write_text(json.dumps(self.settings, indent=2, sort_keys=True) + "\n")

    def _read(self) -> list[EpisodeRecord]:
        if not self.path.is_file():
            return []
        raw = self.path.read_bytes()
        lines = raw.split(b"\n")
        records: list[EpisodeRecord] = []
        good_end = 0  # byte offset after the last whole record
        offset = 0
        for number, line in enumerate(lines, 1):
            end = offset + len(line) + 1
            last = number == len(lines) or (number == len(lines) - 1 and lines[-1] == b"")
            if line.strip():
                try:
                    record = EpisodeRecord.from_dict(json.loads(line))
                except ValueError as err:
                    if last:  # torn by a kill mid-write: drop it, the episode reruns
                        break
                    raise ValueError(
                        f"{self.path} line {number}: bad episode record ({err})"
                    ) from None
                if number == len(lines):  # whole JSON but no newline: still a torn write
                    break
                records.append(record)
            offset = end
            good_end = min(end, len(raw))
        if good_end < len(raw):
            with self.path.open("r+b") as f:
                f.truncate(good_end)
        return records

    def done(self, record_key: tuple[str, str, str]) -> bool:
        """Whether the episode (system, source, task id) is already stored."""
        return record_key in self._done

    def append(self, record: EpisodeRecord) -> None:
        """Store one finished episode (appended, flushed and synced before returning)."""
        if record.key in self._done:
            raise ValueError(f"episode {record.key} is already in {self.path}")
        line = json.dumps(record.to_dict(), ensure_ascii=False) + "\n"
        with self.path.open("a", encoding="utf-8") as f:
            f.write(line)
            f.flush()
            os.fsync(f.fileno())
        self.records.append(record)
        self._done.add(record.key)


def _at(data: Any, path: str) -> Any:
    for part in path.split("."):
        if not isinstance(data, dict) or part not in data:
            return None
        data = data[part]
    return data


__all__ = ["EPISODES_FILE", "FINGERPRINT_FILE", "EpisodeStore", "FingerprintMismatch"]
