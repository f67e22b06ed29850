"""A callback that SIGKILLs its own process at a given step (for the exact-resume test)."""

from __future__ import annotations

import os
import signal

import lightning as L


class KillAtStep(L.Callback):
    """Kill the process without any cleanup when the next optimizer step would be ``step + 1``.

    Args:
        step: ``global_step`` at which to die (that many steps are done and checkpointed).
    """

    def __init__(self, step: int) -> None:
        self.step = step

    def on_train_batch_start(
        self, trainer: L.Trainer, pl_module: L.LightningModule, batch, batch_idx: int
    ) -> None:
        if trainer.global_step == self.step:
            os.kill(os.getpid(), signal.SIGKILL)
