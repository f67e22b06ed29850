"""`collate` and `RolloutBatch`: right padding, shapes, alignment with the trajectories."""

from __future__ import annotations

import math

import pytest
import torch

from flowsteer.rollout import RolloutBatch, Trajectory, collate

PAD = 0


def traj(ids, mask, group=0, reward=1.0, error=None) -> Trajectory:
    lps = [-0.5 * (i + 1) if m else 0.0 for i, m in enumerate(mask)]
    return Trajectory(ids, mask, lps, reward, group_id=group, error=error)


@pytest.fixture
def batch() -> RolloutBatch:
    trajectories = [
        traj([5, 6, 7, 8, 9], [0, 0, 1, 1, 0], group=0, reward=1.0),
        traj([5, 6, 7], [0, 1, 1], group=0, reward=0.0),
        traj([5, 6, 7, 8], [0, 0, 0, 1], group=1, reward=-1.0),
    ]
    return collate(trajectories, torch.tensor([0.7, -0.7, 0.0]), PAD)


def test_right_padded_tensors_with_documented_shapes(batch):
    assert len(batch) == 3
    assert batch.input_ids.shape == (3, 5) and batch.input_ids.dtype == torch.long
    assert batch.attention_mask.dtype == torch.long and batch.loss_mask.dtype == torch.float32
    assert batch.rollout_logprobs.shape == (3, 5) and batch.rollout_logprobs.dtype == torch.float32
    assert batch.advantages.shape == batch.rewards.shape == batch.group_ids.shape == (3,)
    assert batch.input_ids.tolist() == [[5, 6, 7, 8, 9], [5, 6, 7, PAD, PAD], [5, 6, 7, 8, PAD]]
    assert batch.attention_mask.tolist() == [[1] * 5, [1, 1, 1, 0, 0], [1, 1, 1, 1, 0]]
    assert batch.loss_mask.tolist() == [[0, 0, 1, 1, 0], [0, 1, 1, 0, 0], [0, 0, 0, 1, 0]]
    assert batch.rollout_logprobs[0].tolist() == [0.0, 0.0, -1.5, -2.0, 0.0]
    assert batch.rewards.tolist() == [1.0, 0.0, -1.0]
    assert batch.group_ids.tolist() == [0, 0, 1]
    assert batch.num_loss_tokens == 5
    assert batch.old_logprobs is None and batch.ref_logprobs is None


def test_select_makes_trimmed_minibatches(batch):
    batch.old_logprobs = torch.arange(15, dtype=torch.float32).view(3, 5)
    mini = batch.select([1, 2])
    assert len(mini) == 2 and mini.input_ids.shape == (2, 4)  # trimmed to its longest row
    assert mini.input_ids.tolist() == [[5, 6, 7, PAD], [5, 6, 7, 8]]
    assert mini.advantages.tolist() == pytest.approx([-0.7, 0.0])
    assert mini.old_logprobs.tolist() == [[5, 6, 7, 8], [10, 11, 12, 13]]
    assert mini.ref_logprobs is None
    assert mini.num_loss_tokens == 3
    assert sum(batch.select([i]).num_loss_tokens for i in range(3)) == batch.num_loss_tokens


def test_to_moves_every_tensor(batch):
    moved = batch.to("cpu")
    assert torch.equal(moved.input_ids, batch.input_ids) and moved.ref_logprobs is None


def test_failed_episodes_are_refused(batch):
    bad = traj([5, 6], [0, 1], reward=math.nan, error="engine failed at turn 1: boom")
    with pytest.raises(ValueError, match="drop episodes with error"):
        collate([bad], torch.zeros(1), PAD)


def test_bad_inputs_name_what_is_wrong():
    good = traj([5, 6], [0, 1])
    with pytest.raises(ValueError, match=r"advantages must have shape \[1\]"):
        collate([good], torch.zeros(2), PAD)
    with pytest.raises(ValueError, match="differ in length"):
        collate([Trajectory([5, 6], [0], [0.0], 1.0)], torch.zeros(1), PAD)
    with pytest.raises(ValueError, match="at least one"):
        collate([], torch.zeros(0), PAD)
