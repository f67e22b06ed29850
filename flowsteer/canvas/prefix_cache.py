"""The executor's prefix cache: re-running a workflow after an edit reuses the unchanged prefix.

The canvas executes the whole workflow after every accepted edit, and most edits append or
change something near the end. The executor therefore caches, per top-level step, the state
*after* that step (plus the step's trace records and outputs) under a key that chains:

    key_0 = H(task identity, executor fingerprint)
    key_i = H(key_{i-1}, step i's ids, operators, resolved prompts, loop count, branches)

so key_i covers the task and everything at and before step i. Appending a step reuses every
earlier step; editing step j (its operator, prompt, children, count) changes key_j and hence
every later key, so exactly the steps at and after the edit run again. Node ids are part of
the key (they never get reused within an episode, and the trace names them).

Rules: only steps that ran without any error are stored (a transient backend failure must not
be replayed forever); once one step misses, later steps are not looked up in that run (an
evicted earlier step could otherwise be recomputed differently under sampling while stale later
steps were reused). The store is an LRU bounded by `max_entries`. With temperature > 0 a hit
replays the earlier sample instead of drawing a new one: that is the point (the policy sees the
effect of its edit, not sampling noise), and the reason the cache can be switched off.
"""

from __future__ import annotations

import hashlib
import json
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class CacheStats:
    """Counters of a `PrefixCache`.

    Attributes:
        hits: Steps served from the cache.
        misses: Steps looked up and not found.
        stores: Steps stored.
        evictions: Entries dropped by the LRU bound.
        size: Entries held now.
    """

    hits: int = 0
    misses: int = 0
    stores: int = 0
    evictions: int = 0
    size: int = 0


class PrefixCache:
    """A bounded LRU from chained step keys to cached step results.

    Args:
        max_entries: Most steps held; the least recently used is dropped past it.
    """

    def __init__(self, max_entries: int = 4096) -> None:
        if max_entries < 1:
            raise ValueError(f"max_entries must be >= 1, got {max_entries}")
        self.max_entries = max_entries
        self._data: OrderedDict[str, Any] = OrderedDict()
        self._hits = self._misses = self._stores = self._evictions = 0

    @staticmethod
    def key(parent: str, part: Any) -> str:
        """The chained key of `part` (any JSON-able value) after `parent`."""
        blob = json.dumps(part, sort_keys=True, ensure_ascii=False, default=str)
        return hashlib.blake2b(f"{parent}\x00{blob}".encode(), digest_size=16).hexdigest()

    def get(self, key: str) -> Any | None:
        value = self._data.get(key)
        if value is None:
            self._misses += 1
            return None
        self._data.move_to_end(key)
        self._hits += 1
        return value

    def put(self, key: str, value: Any) -> None:
        self._data[key] = value
        self._data.move_to_end(key)
        self._stores += 1
        while len(self._data) > self.max_entries:
            self._data.popitem(last=False)
            self._evictions += 1

    def clear(self) -> None:
        self._data.clear()

    def __len__(self) -> int:
        return len(self._data)

    @property
    def stats(self) -> CacheStats:
        return CacheStats(self._hits, self._misses, self._stores, self._evictions, len(self._data))


__all__ = ["CacheStats", "PrefixCache"]
