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

Scope. A cache belongs to one episode (`flowsteer.canvas.execution.ExecutionScope`): the
executor holds one `PrefixCache` per scope in a `ScopedCaches`, keyed weakly, so a cache is
dropped with its episode (memory stays flat over thousands of episodes) and two episodes never
share a cached call (G sampled episodes of one task must be independent samples). An
execution without a scope uses no cache at all.

Budget. An entry stores the backend calls and tokens its step cost; a hit charges them to the
execution's budget as if the step had run, so a workflow built edit by edit hits `max_calls`
exactly where the same workflow built at once does.

Rules: only steps that ran without any error are stored (a transient backend failure must not
be replayed forever); once one step misses, later steps are not looked up in that run (an
evicted earlier step could otherwise be recomputed differently under sampling while stale later
steps were reused). The store is an LRU bounded by `max_entries`. With temperature > 0 a hit
replays the earlier sample *of the same episode* instead of drawing a new one: that is the point
(the policy sees the effect of its edit, not sampling noise), and the reason the cache can be
switched off.
"""

from __future__ import annotations

import hashlib
import json
import weakref
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


class _Counts:
    """Counters shared by the caches of one `ScopedCaches` (they outlive each cache)."""

    def __init__(self) -> None:
        self.hits = self.misses = self.stores = self.evictions = 0


class PrefixCache:
    """A bounded LRU from chained step keys to cached step results.

    Args:
        max_entries: Most steps held; the least recently used is dropped past it.
    """

    def __init__(self, max_entries: int = 4096, counts: _Counts | None = None) -> None:
        if max_entries < 1:
            raise ValueError(f"max_entries must be >= 1, got {max_entries}")
        self.max_entries = max_entries
        self._data: OrderedDict[str, Any] = OrderedDict()
        self._counts = counts if counts is not None else _Counts()

    @staticmethod
    def key(parent: str, part: Any) -> str:
        """The chained key of `part` (any JSON-able value) after `parent`."""
        blob = json.dumps(part, sort_keys=True, ensure_ascii=False, default=str)
        return hashlib.blake2b(f"{parent}\x00{blob}".encode(), digest_size=16).hexdigest()

    def get(self, key: str) -> Any | None:
        value = self._data.get(key)
        if value is None:
            self._counts.misses += 1
            return None
        self._data.move_to_end(key)
        self._counts.hits += 1
        return value

    def put(self, key: str, value: Any) -> None:
        self._data[key] = value
        self._data.move_to_end(key)
        self._counts.stores += 1
        while len(self._data) > self.max_entries:
            self._data.popitem(last=False)
            self._counts.evictions += 1

    def clear(self) -> None:
        self._data.clear()

    def __len__(self) -> int:
        return len(self._data)

    @property
    def stats(self) -> CacheStats:
        c = self._counts
        return CacheStats(c.hits, c.misses, c.stores, c.evictions, len(self._data))


class ScopedCaches:
    """One `PrefixCache` per episode scope, each dropped when its scope is garbage collected.

    Args:
        max_entries: Most steps one episode's cache holds.
    """

    def __init__(self, max_entries: int = 4096) -> None:
        if max_entries < 1:
            raise ValueError(f"max_entries must be >= 1, got {max_entries}")
        self.max_entries = max_entries
        self._caches: weakref.WeakKeyDictionary[Any, PrefixCache] = weakref.WeakKeyDictionary()
        self._counts = _Counts()

    def for_scope(self, scope: Any) -> PrefixCache | None:
        """The cache of `scope` (created on first use); ``None`` for no scope: no caching."""
        if scope is None:
            return None
        cache = self._caches.get(scope)
        if cache is None:
            cache = PrefixCache(self.max_entries, self._counts)
            self._caches[scope] = cache
        return cache

    def release(self, scope: Any) -> None:
        """Drop `scope`'s cache now (it is dropped anyway when the scope is collected)."""
        self._caches.pop(scope, None)

    def __len__(self) -> int:
        """Live episode caches."""
        return len(self._caches)

    @property
    def stats(self) -> CacheStats:
        """Counts over every episode so far; ``size``: entries held by live episodes."""
        c = self._counts
        size = sum(len(cache) for cache in list(self._caches.values()))
        return CacheStats(c.hits, c.misses, c.stores, c.evictions, size)


__all__ = ["CacheStats", "PrefixCache", "ScopedCaches"]
