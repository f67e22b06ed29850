"""Group-relative advantages (docs/design.md §5): each episode's reward against its group's.

A group is the G episodes sampled for one task. Each episode's advantage is its reward minus its
group's mean, scaled by a standard deviation, so the update needs no value model.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
from torch import Tensor

StdScale = Literal["group", "batch", "none"]
ZeroVariance = Literal["keep", "drop"]


@dataclass(frozen=True)
class Advantages:
    """Advantages of one rollout batch.

    Attributes:
        values: One advantage per episode, ``[B]`` float; exactly 0 for every episode of a
            zero-variance group.
        keep: ``[B]`` bool; False for the episodes of zero-variance groups when they are
            dropped (``zero_variance="drop"``), True otherwise.
        num_groups: Distinct groups in the batch.
        zero_variance_groups: Groups whose rewards are all equal (counted whether kept or
            dropped).
    """

    values: Tensor
    keep: Tensor
    num_groups: int
    zero_variance_groups: int

    def to_dict(self, prefix: str = "adv") -> dict[str, float]:
        """Counts and spread for logging, named ``"{prefix}/…"``."""
        kept = self.values[self.keep]
        return {
            f"{prefix}/num_groups": float(self.num_groups),
            f"{prefix}/zero_variance_groups": float(self.zero_variance_groups),
            f"{prefix}/zero_variance_frac": self.zero_variance_groups / max(self.num_groups, 1),
            f"{prefix}/kept": float(self.keep.sum()),
            f"{prefix}/abs_mean": float(kept.abs().mean()) if kept.numel() else 0.0,
        }


def compute_advantages(
    rewards: Tensor,
    group_ids: Tensor,
    *,
    std_scale: StdScale = "group",
    eps: float = 1e-6,
    zero_variance: ZeroVariance = "keep",
    zero_variance_atol: float = 1e-6,
) -> Advantages:
    """``A_i = (R_i − mean_g(i)) / (std + eps)``, with the std chosen by ``std_scale``.

    * ``"group"``: the std of the episode's own group (GRPO).
    * ``"batch"``: one std of all rewards in the batch (of the kept episodes when zero-variance
      groups are dropped), which keeps rare-success groups from being blown up by a tiny
      group std.
    * ``"none"``: no scaling, ``A_i = R_i − mean_g(i)`` (Dr. GRPO).

    Every std is the population std (divides by n, not n − 1): it is defined for a group of
    one (which has zero variance), and group-scaled advantages then have exactly unit RMS
    within a group.

    A group is zero-variance when ``max(R) − min(R) <= zero_variance_atol`` over its episodes:
    it carries no learning signal, so its advantages are exactly 0 in every mode. With
    ``zero_variance="drop"`` its episodes are also marked ``keep=False`` so the trainer leaves
    them out of the update (their tokens would otherwise still count in the loss normaliser).

    Args:
        rewards: ``[B]`` scalar rewards.
        group_ids: ``[B]`` integer group of each episode (any values; equal means same task).
        std_scale: ``"group"``, ``"batch"`` or ``"none"`` (above).
        eps: Added to the std before dividing.
        zero_variance: ``"keep"`` zero-variance groups with A = 0, or ``"drop"`` them.
        zero_variance_atol: Reward spread at or below which a group counts as zero-variance.

    Returns:
        `Advantages` on the rewards' device, float32 (or the rewards' float dtype).
    """
    if rewards.dim() != 1 or group_ids.shape != rewards.shape:
        raise ValueError(
            f"rewards and group_ids must both be [B]; got {tuple(rewards.shape)} and "
            f"{tuple(group_ids.shape)}"
        )
    if group_ids.dtype.is_floating_point or group_ids.dtype == torch.bool:
        raise ValueError(f"group_ids must be an integer tensor, got {group_ids.dtype}")
    if std_scale not in ("group", "batch", "none"):
        raise ValueError(f"std_scale must be 'group', 'batch' or 'none', got {std_scale!r}")
    if zero_variance not in ("keep", "drop"):
        raise ValueError(f"zero_variance must be 'keep' or 'drop', got {zero_variance!r}")
    if not torch.isfinite(rewards).all():
        raise ValueError(f"rewards must be finite, got {rewards.tolist()}")

    rewards = rewards if rewards.dtype.is_floating_point else rewards.float()
    _, group = torch.unique(group_ids, return_inverse=True)  # [B] in 0..G-1
    num_groups = int(group.max()) + 1 if group.numel() else 0
    counts = torch.zeros(num_groups, dtype=rewards.dtype, device=rewards.device)
    counts.index_add_(0, group, torch.ones_like(rewards))  # [G]
    sums = torch.zeros_like(counts).index_add_(0, group, rewards)  # [G]
    means = sums / counts  # [G]
    centred = rewards - means[group]  # [B]
    sq_sums = torch.zeros_like(counts).index_add_(0, group, centred.square())  # [G]
    group_std = (sq_sums / counts).sqrt()  # [G]

    high = torch.full_like(counts, -torch.inf).scatter_reduce_(0, group, rewards, "amax")  # [G]
    low = torch.full_like(counts, torch.inf).scatter_reduce_(0, group, rewards, "amin")  # [G]
    flat_group = (high - low) <= zero_variance_atol  # [G]
    flat = flat_group[group]  # [B]
    keep = ~flat if zero_variance == "drop" else torch.ones_like(flat)  # [B]

    if std_scale == "group":
        values = centred / (group_std[group] + eps)
    elif std_scale == "batch":
        kept = rewards[keep]
        batch_std = kept.std(unbiased=False) if kept.numel() else rewards.new_zeros(())
        values = centred / (batch_std + eps)
    else:
        values = centred
    values = torch.where(flat, 0.0, values)
    return Advantages(
        values=values,
        keep=keep,
        num_groups=num_groups,
        zero_variance_groups=int(flat_group.sum()),
    )
