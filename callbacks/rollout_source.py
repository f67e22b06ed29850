"""`RolloutSource`: the seam for "what fills the trainer's buffer each RL iteration".

`CWRPOModule` trains on whatever a rollout source hands it; `RolloutCallback` (episodes on the
canvas) is one, `callbacks.single_turn.SingleTurnSource` (one completion per prompt, a string
reward) another. A source is a Lightning callback that implements two methods:

* `episodes_per_iteration(trainer)`: how many episodes this rank plays every iteration. The
  module needs it at setup, before any rollout, to size its loader (steps per iteration);
* `play(trainer, pl_module)`: this iteration's episodes, as `Trajectory` objects (tokens, loss
  mask, engine log-probs, reward, group id).

The base class does the rest, identically for every source: it sets the module's rollout size at
setup, and at every iteration start plays, drops failed episodes (reward NaN or an error),
computes group-relative advantages, collates the buffer and hands it to the module. Override
`on_rollout` to log what the episodes say.
"""

from __future__ import annotations

import math
import time
from typing import Literal

import lightning as L
import torch

from flowsteer.rl.advantages import Advantages, compute_advantages
from flowsteer.rollout.batch import collate
from flowsteer.rollout.trajectory import Trajectory


class RolloutSource(L.Callback):
    """Base class of the callbacks that fill `CWRPOModule`'s buffer (see the module docstring).

    Args:
        std_scale: Advantage std: per ``group`` (GRPO), per ``batch``, or ``none`` (Dr. GRPO);
            see `flowsteer.rl.advantages.compute_advantages`.
        zero_variance: Groups whose rewards are all equal: ``keep`` with A = 0, or ``drop``
            them before the update (their tokens would still count in the loss normaliser).
    """

    def __init__(
        self,
        *,
        std_scale: Literal["group", "batch", "none"] = "group",
        zero_variance: Literal["keep", "drop"] = "keep",
    ) -> None:
        self.std_scale = std_scale
        self.zero_variance = zero_variance

    def episodes_per_iteration(self, trainer: L.Trainer) -> int:
        """Episodes this rank plays every iteration (the same every iteration)."""
        raise NotImplementedError(
            f"{type(self).__name__} must implement RolloutSource.episodes_per_iteration(trainer)"
        )

    def play(self, trainer: L.Trainer, pl_module: L.LightningModule) -> list[Trajectory]:
        """This iteration's episodes on this rank (``episodes_per_iteration`` of them)."""
        raise NotImplementedError(
            f"{type(self).__name__} must implement RolloutSource.play(trainer, pl_module)"
        )

    def on_rollout(
        self,
        trainer: L.Trainer,
        pl_module: L.LightningModule,
        trajectories: list[Trajectory],
        advantages: Advantages,
        seconds: float,
    ) -> None:
        """Called after the buffer is filled (for logging); does nothing by default."""

    # -- what the base class does for every source ---------------------------------------------

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        if stage == "fit":
            size = int(self.episodes_per_iteration(trainer))
            if size < 1:
                raise ValueError(
                    f"{type(self).__name__}.episodes_per_iteration returned {size}; "
                    f"a rollout needs at least one episode"
                )
            pl_module.rollout_size = size

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        started = time.perf_counter()
        trajectories = self.play(trainer, pl_module)
        seconds = time.perf_counter() - started
        expected = pl_module.rollout_size
        if len(trajectories) > expected:  # fewer is fine: they train like dropped groups
            raise RuntimeError(
                f"{type(self).__name__}.play returned {len(trajectories)} episodes; "
                f"episodes_per_iteration said at most {expected}"
            )
        ok = [t for t in trajectories if t.error is None and not math.isnan(t.reward)]
        if not ok:
            first = trajectories[0].error if trajectories else "none"
            raise RuntimeError(
                f"{type(self).__name__}: every one of {len(trajectories)} episodes failed this "
                f"iteration (first error: {first})"
            )
        rewards = torch.tensor([t.reward for t in ok], dtype=torch.float32)
        groups = torch.tensor([t.group_id for t in ok], dtype=torch.long)
        advantages = compute_advantages(
            rewards, groups, std_scale=self.std_scale, zero_variance=self.zero_variance
        )
        batch = collate(ok, advantages.values, pl_module.policy.tokenizer.pad_token_id)
        rows = [i for i, keep in enumerate(advantages.keep.tolist()) if keep]
        pl_module.set_rollout(batch, rows)
        self.on_rollout(trainer, pl_module, trajectories, advantages, seconds)
