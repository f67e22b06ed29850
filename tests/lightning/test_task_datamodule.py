"""TaskDataModule: I/O in setup, distinct tasks per rank, resumable stream position."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from datamodules import TaskDataModule, TaskFile
from tests.lightning.conftest import EXAMPLES

FILES = [
    TaskFile("gsm8k", str(EXAMPLES / "gsm8k_sample.jsonl")),
    TaskFile("humaneval", str(EXAMPLES / "humaneval_sample.jsonl")),
]


def _module(rank: int = 0, world: int = 1, **kwargs) -> TaskDataModule:
    dm = TaskDataModule(FILES, val=FILES, tasks_per_source=2, **kwargs)
    dm.trainer = SimpleNamespace(global_rank=rank, world_size=world)  # what setup reads
    dm.setup("fit")
    return dm


def test_io_happens_in_setup_not_init() -> None:
    dm = TaskDataModule([TaskFile("gsm8k", "/no/such/file.jsonl")])
    with pytest.raises((FileNotFoundError, ValueError), match=r"file\.jsonl"):
        dm.setup("fit")


def test_fixed_count_per_source_per_step() -> None:
    tasks = _module().next_train_tasks()
    assert sorted(t.source for t in tasks) == ["gsm8k", "gsm8k", "humaneval", "humaneval"]


def test_ranks_draw_distinct_tasks_that_cover_the_global_batch() -> None:
    whole = [t.id for t in _module().next_train_tasks()]
    shares = [[t.id for t in _module(rank, 2).next_train_tasks()] for rank in range(2)]
    assert not set(shares[0]) & set(shares[1])
    assert sorted(shares[0] + shares[1]) == sorted(whole)


def test_indivisible_batch_is_refused() -> None:
    with pytest.raises(ValueError, match="tasks_per_source"):
        _module(0, 3)


def test_position_survives_a_checkpoint_round_trip() -> None:
    first = _module()
    for _ in range(3):
        first.next_train_tasks()
    state = first.state_dict()
    expected = [t.id for t in first.next_train_tasks()]
    restored = TaskDataModule(FILES, val=FILES, tasks_per_source=2)
    restored.trainer = SimpleNamespace(global_rank=0, world_size=1)
    restored.load_state_dict(state)  # Lightning may restore before setup
    restored.setup("fit")
    assert [t.id for t in restored.next_train_tasks()] == expected


def test_validation_batches_are_task_lists() -> None:
    dm = _module(eval_batch_size=5)
    batches = list(dm.val_dataloader())
    assert [len(b) for b in batches] == [5, 5, 2]
    assert {t.source for b in batches for t in b.tasks} == {"gsm8k", "humaneval"}
