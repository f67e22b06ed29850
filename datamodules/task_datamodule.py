"""`TaskDataModule`: the stream of training tasks, and the held-out tasks per source.

It yields `Task`s, never tensors: the rollout callback pulls the next tasks at the start of every
RL iteration (`next_train_tasks`), and the validation/test loaders yield lists of tasks that the
module plays greedily. The stream position lives in checkpoints (`state_dict`), so a resumed run
draws exactly the tasks the uninterrupted run would have drawn. Under DDP/FSDP every rank builds
the same seeded mixture, draws the same global batch, and keeps its own slice, so ranks see
distinct tasks without any communication.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import lightning as L
from torch.utils.data import DataLoader

from flowsteer.tasks import Task, TaskMixture, read_tasks


@dataclass(frozen=True)
class TaskFile:
    """One dataset file (or directory, or cached hub name) in its native schema.

    Attributes:
        source: Its schema: ``gsm8k``, ``math``, ``hotpotqa``, ``squad_v2``, ``mbpp``,
            ``humaneval``, or a registered source of your own.
        path: File, directory or hub name to read.
        split: Split to read from a directory or hub dataset.
        limit: Read at most this many tasks.
    """

    source: str
    path: str
    split: str | None = None
    limit: int | None = None


class TaskBatch(Sequence[Task]):
    """Held-out tasks for one validation/test step (a plain sequence Lightning will not copy)."""

    def __init__(self, tasks: Sequence[Task]) -> None:
        self.tasks = list(tasks)

    def __getitem__(self, index):  # type: ignore[override]
        return self.tasks[index]

    def __len__(self) -> int:
        return len(self.tasks)

    def to(self, device: Any) -> TaskBatch:
        """Tasks are text; moving them to a device is a no-op."""
        return self


class TaskDataModule(L.LightningDataModule):
    """Training tasks as a resumable mixture stream; validation and test tasks per source.

    Args:
        train: Training datasets; each file is a source of the mixture (files of the same source
            are pooled). None or empty: no tasks (a rollout source that needs none, e.g.
            `callbacks.single_turn.SingleTurnSource`).
        val: Held-out datasets for ``validate`` and for validation during ``fit``.
        test: Datasets for ``test``.
        tasks_per_source: Tasks drawn from each source per RL iteration, over all ranks together
            (paper: 6).
        counts: Per-source override of ``tasks_per_source``.
        weights: Sample each slot's source by weight instead of fixed counts (needs
            ``tasks_per_step``).
        tasks_per_step: Tasks per iteration over all ranks when sampling by ``weights``.
        seed: Fixes the stream.
        shuffle: Walk each pool in a seeded random order (else file order).
        on_error: A bad record in a task file: ``raise`` (the default: fail at start, naming
            file, record and field) or ``skip`` it with a warning.
        eval_batch_size: Held-out tasks per validation/test step.
    """

    def __init__(
        self,
        train: list[TaskFile] | None = None,
        val: list[TaskFile] | None = None,
        test: list[TaskFile] | None = None,
        tasks_per_source: int = 6,
        counts: dict[str, int] | None = None,
        weights: dict[str, float] | None = None,
        tasks_per_step: int | None = None,
        seed: int = 0,
        shuffle: bool = True,
        on_error: Literal["raise", "skip"] = "raise",
        eval_batch_size: int = 8,
    ) -> None:
        super().__init__()
        if tasks_per_source < 1:
            raise ValueError(
                f"TaskDataModule: tasks_per_source must be >= 1, got {tasks_per_source}"
            )
        if eval_batch_size < 1:
            raise ValueError(f"TaskDataModule: eval_batch_size must be >= 1, got {eval_batch_size}")
        # The mixture checks these too, but only in `setup`, after the model has been loaded.
        if counts is not None and weights is not None:
            raise ValueError("TaskDataModule: give counts or weights, not both")
        if weights is not None and tasks_per_step is None:
            raise ValueError("TaskDataModule: sampling by weights needs tasks_per_step")
        if tasks_per_step is not None and tasks_per_step < 1:
            raise ValueError(f"TaskDataModule: tasks_per_step must be >= 1, got {tasks_per_step}")
        negative = {k: v for k, v in {**(counts or {}), **(weights or {})}.items() if v < 0}
        if negative:
            raise ValueError(f"TaskDataModule: counts/weights must be >= 0, got {negative}")
        self.train_files = list(train or [])
        self.val_files = list(val or [])
        self.test_files = list(test or [])
        self.tasks_per_source = tasks_per_source
        self.counts = counts
        self.weights = weights
        self.tasks_per_step = tasks_per_step
        self.seed = seed
        self.shuffle = shuffle
        self.on_error = on_error
        self.eval_batch_size = eval_batch_size
        self.mixture: TaskMixture | None = None
        self.val_tasks: list[Task] = []
        self.test_tasks: list[Task] = []
        self._pending_state: dict[str, Any] | None = None

    # -- I/O ---------------------------------------------------------------------------------

    def _read(self, files: Sequence[TaskFile]) -> dict[str, list[Task]]:
        pools: dict[str, list[Task]] = {}
        for file in files:
            result = read_tasks(file.source, file.path, file.split, file.limit, self.on_error)
            if not result.tasks:
                raise ValueError(f"TaskDataModule: {file.path} ({file.source}) holds no tasks")
            pools.setdefault(file.source, []).extend(result.tasks)
        return pools

    def setup(self, stage: str | None = None) -> None:
        """Read the task files this stage needs (every rank reads its own copy)."""
        if stage in (None, "fit") and self.mixture is None and self.train_files:
            pools = self._read(self.train_files)
            counts = None
            if self.weights is None:
                counts = {name: self.tasks_per_source for name in pools}
                counts.update(self.counts or {})
            self.mixture = TaskMixture(
                pools,
                counts=counts,
                weights=self.weights,
                batch_size=self.tasks_per_step,
                seed=self.seed,
                shuffle=self.shuffle,
            )
            if self._pending_state is not None:
                self.mixture.load_state_dict(self._pending_state)
                self._pending_state = None
            self._check_divisible()
        if stage in (None, "fit", "validate") and not self.val_tasks:
            self.val_tasks = _flatten(self._read(self.val_files))
        if stage in (None, "test") and not self.test_tasks:
            self.test_tasks = _flatten(self._read(self.test_files))

    # -- ranks -------------------------------------------------------------------------------

    @property
    def _world(self) -> tuple[int, int]:
        trainer = self.trainer
        if trainer is None:
            return 0, 1
        return trainer.global_rank, trainer.world_size

    def _check_divisible(self) -> None:
        assert self.mixture is not None
        _, world = self._world
        if self.mixture.batch_size % world:
            raise ValueError(
                f"TaskDataModule: {self.mixture.batch_size} tasks per iteration cannot be split "
                f"evenly over {world} ranks; make tasks_per_source/counts/tasks_per_step a "
                f"multiple of the world size"
            )

    @property
    def tasks_per_rank(self) -> int:
        """Tasks each rank plays per RL iteration."""
        if self.mixture is None:
            raise ValueError(
                "TaskDataModule: no training tasks: data.train lists no TaskFile (episodes on "
                "the canvas need tasks; a rollout source of its own needs none)"
                if not self.train_files
                else "TaskDataModule.setup('fit') has not run yet"
            )
        return self.mixture.batch_size // self._world[1]

    def next_train_tasks(self) -> list[Task]:
        """This rank's share of the next iteration's tasks; advances the stream on every rank."""
        if self.mixture is None:
            raise RuntimeError("TaskDataModule.setup('fit') has not run yet")
        rank, world = self._world
        return self.mixture.next_batch()[rank::world]

    # -- loaders -------------------------------------------------------------------------------

    def train_dataloader(self) -> Any:
        """The training "data" of an RL iteration is the module's rollout buffer, which the
        rollout callback fills from `next_train_tasks`; the module owns its minibatching."""
        return self.trainer.lightning_module.train_dataloader()

    def _eval_loader(self, tasks: list[Task]) -> DataLoader:
        # Under DDP Lightning adds a DistributedSampler, so ranks play distinct tasks.
        return DataLoader(
            tasks, batch_size=self.eval_batch_size, shuffle=False, collate_fn=TaskBatch
        )

    def val_dataloader(self) -> DataLoader:
        return self._eval_loader(self.val_tasks)

    def test_dataloader(self) -> DataLoader:
        return self._eval_loader(self.test_tasks)

    # -- checkpoint ----------------------------------------------------------------------------

    def state_dict(self) -> dict[str, Any]:
        """The stream position (identical on every rank)."""
        return {"mixture": self.mixture.state_dict()} if self.mixture is not None else {}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        if "mixture" not in state_dict:
            return
        if self.mixture is None:
            self._pending_state = state_dict["mixture"]
        else:
            self.mixture.load_state_dict(state_dict["mixture"])


def _flatten(pools: dict[str, list[Task]]) -> list[Task]:
    return [task for pool in pools.values() for task in pool]
