"""`TaskMixture`: the stream of training tasks, interleaving several sources.

The paper draws a fixed number of tasks per source at every RL step; ``counts`` does that.
``weights`` instead samples each batch slot's source in proportion to its weight. Either way each
source is walked through a fresh seeded permutation per pass, so the stream depends only on the
seed, and `state_dict` / `load_state_dict` resume it exactly where it stopped (a Lightning
checkpoint stores it through the DataModule).
"""

from __future__ import annotations

import random
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from flowsteer.tasks.task import Task


class TaskMixture:
    """An endless, reproducible, resumable stream of task batches from several pools.

    Args:
        pools: Source name -> its tasks.
        counts: Tasks drawn from each source per batch (the paper's scheme). Sources left out
            contribute nothing. Defaults to one per source when ``weights`` is not given.
        weights: Relative sampling weight per source; needs ``batch_size``.
        batch_size: Tasks per batch when sampling by ``weights``.
        seed: Fixes every permutation and every weighted draw.
        shuffle: Walk each pool in a seeded random order per pass (else in file order).

    Example:
        >>> a = [Task(f"a{i}", "a", "math", "q", "1") for i in range(3)]
        >>> b = [Task(f"b{i}", "b", "qa", "q", "x") for i in range(2)]
        >>> mix = TaskMixture({"a": a, "b": b}, counts={"a": 2, "b": 1}, shuffle=False)
        >>> [t.id for t in mix.next_batch()]
        ['a0', 'b0', 'a1']
    """

    def __init__(
        self,
        pools: Mapping[str, Sequence[Task]],
        counts: Mapping[str, int] | None = None,
        weights: Mapping[str, float] | None = None,
        batch_size: int | None = None,
        seed: int = 0,
        shuffle: bool = True,
    ) -> None:
        if not pools:
            raise ValueError("TaskMixture needs at least one source pool")
        empty = [name for name, pool in pools.items() if not pool]
        if empty:
            raise ValueError(f"TaskMixture: source pool(s) {empty} have no tasks")
        if counts is not None and weights is not None:
            raise ValueError("TaskMixture: give counts or weights, not both")
        self.pools = {name: list(pool) for name, pool in pools.items()}
        self.seed = seed
        self.shuffle = shuffle
        self.weights: dict[str, float] | None = None
        self.counts: dict[str, int] | None = None
        if weights is not None:
            self._check_names(weights, "weights")
            if any(w < 0 for w in weights.values()) or sum(weights.values()) <= 0:
                raise ValueError(
                    f"TaskMixture: weights must be >= 0 with a positive sum, got {dict(weights)}"
                )
            if batch_size is None or batch_size < 1:
                raise ValueError("TaskMixture: sampling by weights needs batch_size >= 1")
            self.weights = dict(weights)
            self.batch_size = batch_size
        else:
            counts = dict(counts) if counts is not None else dict.fromkeys(self.pools, 1)
            self._check_names(counts, "counts")
            if any(c < 0 for c in counts.values()) or sum(counts.values()) < 1:
                raise ValueError(
                    f"TaskMixture: counts must be >= 0 with at least one task, got {counts}"
                )
            self.counts = counts
            self.batch_size = sum(counts.values())
        self.step = 0
        self._cursor = dict.fromkeys(self.pools, 0)  # tasks drawn so far, per source
        self._orders: dict[tuple[str, int], list[int]] = {}

    def _check_names(self, given: Mapping[str, Any], what: str) -> None:
        unknown = sorted(set(given) - set(self.pools))
        if unknown:
            raise ValueError(
                f"TaskMixture: {what} name unknown source(s) {unknown}; sources: {sorted(self.pools)}"
            )

    def _order(self, name: str, epoch: int) -> list[int]:
        key = (name, epoch)
        if key not in self._orders:
            order = list(range(len(self.pools[name])))
            if self.shuffle:
                random.Random(f"{self.seed}/{name}/{epoch}").shuffle(order)
            self._orders = {k: v for k, v in self._orders.items() if k[0] != name}
            self._orders[key] = order
        return self._orders[key]

    def _draw(self, name: str) -> Task:
        pool = self.pools[name]
        epoch, pos = divmod(self._cursor[name], len(pool))
        self._cursor[name] += 1
        return pool[self._order(name, epoch)[pos]]

    def _plan(self) -> list[str]:
        """The source of each slot of the next batch."""
        if self.weights is not None:
            rng = random.Random(f"{self.seed}/step/{self.step}")
            names = list(self.weights)
            return rng.choices(names, weights=[self.weights[n] for n in names], k=self.batch_size)
        assert self.counts is not None
        remaining = dict(self.counts)
        plan: list[str] = []
        while any(remaining.values()):  # round-robin, so a batch interleaves its sources
            for name in self.counts:
                if remaining[name]:
                    plan.append(name)
                    remaining[name] -= 1
        return plan

    def next_batch(self) -> list[Task]:
        """The next batch of tasks; advances the stream."""
        batch = [self._draw(name) for name in self._plan()]
        self.step += 1
        return batch

    def __iter__(self) -> Iterator[list[Task]]:
        while True:
            yield self.next_batch()

    def state_dict(self) -> dict[str, Any]:
        """Position in the stream, plus a fingerprint that refuses a mismatched resume."""
        return {"step": self.step, "cursor": dict(self._cursor), "fingerprint": self._fingerprint()}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Resume at the position saved by `state_dict`."""
        if state.get("fingerprint") != self._fingerprint():
            raise ValueError(
                "TaskMixture: the saved stream position belongs to a different mixture "
                f"(saved {state.get('fingerprint')}, this one {self._fingerprint()}); "
                "sources, pool sizes, seed and counts/weights must match to resume"
            )
        self.step = int(state["step"])
        self._cursor = {name: int(state["cursor"][name]) for name in self.pools}

    def _fingerprint(self) -> dict[str, Any]:
        return {
            "sizes": {name: len(pool) for name, pool in self.pools.items()},
            "seed": self.seed,
            "shuffle": self.shuffle,
            "counts": self.counts,
            "weights": self.weights,
        }
