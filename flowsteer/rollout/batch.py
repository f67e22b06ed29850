"""`RolloutBatch`: trajectories as right-padded tensors, and `collate` that builds it.

Every per-token tensor is ``[B, T]`` (B episodes, T the longest sequence) and is aligned with
``input_ids``: index t concerns token ``input_ids[:, t]`` (a log-prob at t scores that token given
the tokens before it; see `flowsteer.rollout.trajectory`). Padding is on the right, with
``attention_mask`` 0 and ``loss_mask`` 0 there.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, fields

import torch

from flowsteer.rollout.trajectory import Trajectory


@dataclass
class RolloutBatch:
    """A batch of episodes for the CWRPO update.

    Attributes:
        input_ids: Token ids, right-padded with the pad id, ``[B, T]`` long.
        attention_mask: 1 on real tokens, 0 on padding, ``[B, T]`` long.
        loss_mask: 1.0 on tokens the policy sampled, ``[B, T]`` float.
        rollout_logprobs: The engine's sampling log-probs on mask-1 tokens, 0.0 elsewhere,
            ``[B, T]`` float.
        advantages: One advantage per episode, ``[B]`` float.
        rewards: R(τ) per episode, ``[B]`` float.
        group_ids: The task group of each episode, ``[B]`` long.
        old_logprobs: π_old log-probs, filled by the trainer before the update, ``[B, T]``.
        ref_logprobs: Reference-policy log-probs for the KL term, filled by the trainer,
            ``[B, T]``.
    """

    input_ids: torch.Tensor
    attention_mask: torch.Tensor
    loss_mask: torch.Tensor
    rollout_logprobs: torch.Tensor
    advantages: torch.Tensor
    rewards: torch.Tensor
    group_ids: torch.Tensor
    old_logprobs: torch.Tensor | None = None
    ref_logprobs: torch.Tensor | None = None

    def __len__(self) -> int:
        return self.input_ids.shape[0]

    @property
    def num_loss_tokens(self) -> int:
        """Mask-1 tokens in the batch (the ``token-mean`` normaliser)."""
        return int(self.loss_mask.sum().item())

    def select(self, indices: Sequence[int] | torch.Tensor) -> RolloutBatch:
        """The episodes at ``indices`` (a minibatch), trimmed to their own longest sequence."""
        index = torch.as_tensor(indices, dtype=torch.long, device=self.input_ids.device)
        width = int(self.attention_mask[index].sum(dim=1).max().item()) if len(index) else 0
        picked = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if value is None:
                picked[f.name] = None
            elif value.dim() == 2:
                picked[f.name] = value[index, :width]
            else:
                picked[f.name] = value[index]
        return RolloutBatch(**picked)

    def to(self, device: torch.device | str) -> RolloutBatch:
        """The same batch on ``device``."""
        return RolloutBatch(
            **{
                f.name: None if getattr(self, f.name) is None else getattr(self, f.name).to(device)
                for f in fields(self)
            }
        )


def collate(
    trajectories: Sequence[Trajectory], advantages: torch.Tensor, pad_token_id: int
) -> RolloutBatch:
    """Right-pad trajectories into a `RolloutBatch`.

    Args:
        trajectories: Scored episodes (episodes with ``error`` set must be dropped first).
        advantages: One advantage per trajectory, ``[B]``.
        pad_token_id: The id written into padding positions.

    Returns:
        The batch; ``old_logprobs`` and ``ref_logprobs`` are left ``None``.
    """
    if not trajectories:
        raise ValueError("collate needs at least one trajectory")
    advantages = torch.as_tensor(advantages, dtype=torch.float32)
    if advantages.shape != (len(trajectories),):
        raise ValueError(
            f"advantages must have shape [{len(trajectories)}] (one per trajectory), "
            f"got {list(advantages.shape)}"
        )
    for i, t in enumerate(trajectories):
        if t.error is not None:
            raise ValueError(
                f"trajectory {i} (task {t.task_id!r}) failed ({t.error}); drop episodes with "
                "error set before computing advantages"
            )
        if not len(t.token_ids) == len(t.loss_mask) == len(t.rollout_logprobs):
            raise ValueError(
                f"trajectory {i} (task {t.task_id!r}): token_ids, loss_mask and "
                f"rollout_logprobs differ in length ({len(t.token_ids)}, {len(t.loss_mask)}, "
                f"{len(t.rollout_logprobs)})"
            )
    batch, width = len(trajectories), max(len(t.token_ids) for t in trajectories)
    input_ids = torch.full((batch, width), pad_token_id, dtype=torch.long)
    attention_mask = torch.zeros((batch, width), dtype=torch.long)
    loss_mask = torch.zeros((batch, width), dtype=torch.float32)
    logprobs = torch.zeros((batch, width), dtype=torch.float32)
    for i, t in enumerate(trajectories):
        n = len(t.token_ids)
        input_ids[i, :n] = torch.tensor(t.token_ids, dtype=torch.long)
        attention_mask[i, :n] = 1
        loss_mask[i, :n] = torch.tensor(t.loss_mask, dtype=torch.float32)
        logprobs[i, :n] = torch.tensor(t.rollout_logprobs, dtype=torch.float32)
    return RolloutBatch(
        input_ids=input_ids,
        attention_mask=attention_mask,
        loss_mask=loss_mask,
        rollout_logprobs=logprobs,
        advantages=advantages,
        rewards=torch.tensor([t.reward for t in trajectories], dtype=torch.float32),
        group_ids=torch.tensor([t.group_id for t in trajectories], dtype=torch.long),
    )


__all__ = ["RolloutBatch", "collate"]
