"""Learning-rate schedules the configs pick by ``class_path`` (plain torch).

Example:
    >>> import torch
    >>> opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    >>> sched = WarmupCosine(opt, warmup_steps=2, total_steps=4)
    >>> lrs = []
    >>> for _ in range(5):
    ...     lrs.append(round(opt.param_groups[0]["lr"], 3))
    ...     opt.step()
    ...     sched.step()
    >>> lrs  # warm-up 1/3, 2/3; the peak at step 2; cosine down to 0 at step 4
    [0.333, 0.667, 1.0, 0.5, 0.0]
"""

from __future__ import annotations

import math

from torch.optim import Optimizer
from torch.optim.lr_scheduler import LambdaLR


class WarmupCosine(LambdaLR):
    """Linear warm-up to the optimizer's lr, then cosine decay to ``min_ratio`` of it.

    Stepped once per RL iteration by `CWRPOModule` (the paper: 10 warm-up steps of 300). Step
    ``s < warmup_steps`` runs at ``(s + 1) / (warmup_steps + 1)`` of the lr and step
    ``warmup_steps`` at the full lr: ``warmup_steps`` iterations below the peak, none of them at
    lr 0 (an RL iteration at lr 0 would spend its whole rollout on nothing).

    Args:
        optimizer: The optimizer whose lr is scheduled.
        warmup_steps: Steps of linear warm-up before the peak (0: start at the peak).
        total_steps: Steps until the end of the cosine.
        min_ratio: The lr at the end, as a fraction of the peak, in [0, 1].
    """

    def __init__(
        self,
        optimizer: Optimizer,
        warmup_steps: int = 10,
        total_steps: int = 300,
        min_ratio: float = 0.0,
    ) -> None:
        if warmup_steps < 0 or total_steps < 1:
            raise ValueError(
                f"WarmupCosine: need warmup_steps >= 0 and total_steps >= 1, got {warmup_steps}, {total_steps}"
            )
        if not 0.0 <= min_ratio <= 1.0:
            raise ValueError(f"WarmupCosine: min_ratio must be in [0, 1], got {min_ratio!r}")
        self.warmup_steps, self.total_steps, self.min_ratio = warmup_steps, total_steps, min_ratio
        super().__init__(optimizer, self.factor)

    def state_dict(self) -> dict:
        """The position only: the shape comes from the config, so a resumed run may extend it."""
        state = super().state_dict()
        for name in ("warmup_steps", "total_steps", "min_ratio"):
            state.pop(name, None)
        return state

    def load_state_dict(self, state_dict: dict) -> None:
        """Restore the position, then set the optimizer's lr from this schedule at it.

        The optimizer's restored lr is the old schedule's (0 at the end of a finished cosine);
        a run resumed with a longer ``total_steps`` must train at the new schedule's rate.
        Loaded after the optimizer (Lightning restores optimizers first), so this lr wins.
        """
        super().load_state_dict(state_dict)
        lrs = [base * self.factor(self.last_epoch) for base in self.base_lrs]
        for group, lr in zip(self.optimizer.param_groups, lrs, strict=True):
            group["lr"] = lr
        self._last_lr = lrs

    def factor(self, step: int) -> float:
        """The lr multiplier at ``step``."""
        if step < self.warmup_steps:
            return (step + 1) / (self.warmup_steps + 1)
        span = max(self.total_steps - self.warmup_steps, 1)
        progress = min((step - self.warmup_steps) / span, 1.0)
        return self.min_ratio + (1 - self.min_ratio) * 0.5 * (1 + math.cos(math.pi * progress))


__all__ = ["WarmupCosine"]
