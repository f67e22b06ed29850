"""`StepCheckpointCallback`: write ``last.ckpt`` after optimizer steps, for exact resume.

CWRPO optimises manually (one training step is one optimizer step), so the state after a step is
the state to resume from: the weights and optimizer have taken step ``global_step``, and the
module's loader resumes at the next minibatch of the iteration's buffer. Lightning's
`ModelCheckpoint` treats manual optimisation with ``every_n_train_steps`` as a special case that
wants the *pre*-step weights (and warns about it on every run); this callback saves the post-step
state plainly. It writes under ``<trainer.default_root_dir>/checkpoints`` unless told otherwise,
so ``--trainer.default_root_dir`` moves a run's checkpoints with its logs.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

import lightning as L
from lightning.pytorch.callbacks import Checkpoint


class StepCheckpointCallback(Checkpoint):
    """Saves ``last.ckpt`` every ``every_n_steps`` optimizer steps (and at the end of training).

    Args:
        dirpath: Where checkpoints go (``None``: ``<trainer.default_root_dir>/checkpoints``).
        every_n_steps: Rewrite ``last.ckpt`` after every this many optimizer steps (1: a run
            killed anywhere resumes from its last step).
        keep_every_n_steps: Also keep a copy ``step=N.ckpt`` every this many steps (0: none).
    """

    def __init__(
        self,
        dirpath: str | None = None,
        every_n_steps: int = 1,
        keep_every_n_steps: int = 0,
    ) -> None:
        if every_n_steps < 1:
            raise ValueError(
                f"StepCheckpointCallback: every_n_steps must be >= 1, got {every_n_steps}"
            )
        if keep_every_n_steps < 0:
            raise ValueError(
                "StepCheckpointCallback: keep_every_n_steps must be >= 0 (0: keep none), "
                f"got {keep_every_n_steps}"
            )
        self.dirpath = dirpath
        self.every_n_steps = every_n_steps
        self.keep_every_n_steps = keep_every_n_steps
        self.last_model_path = ""
        self._saved_step = -1

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        if self.dirpath is None:
            self.dirpath = os.path.join(trainer.default_root_dir, "checkpoints")
        # One directory on every rank (rank 0 writes; they must agree on where).
        self.dirpath = trainer.strategy.broadcast(self.dirpath)

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._saved_step = trainer.global_step  # a resumed run has that step on disk already

    def on_train_batch_end(
        self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any, idx: int
    ) -> None:
        step = trainer.global_step
        if step != self._saved_step and step % self.every_n_steps == 0:
            self.save(trainer)

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.global_step != self._saved_step:
            self.save(trainer)

    def save(self, trainer: L.Trainer) -> None:
        """Write ``last.ckpt`` (via a temporary name, so a kill mid-write leaves the old one)."""
        assert self.dirpath is not None
        step = trainer.global_step
        last = Path(self.dirpath) / "last.ckpt"
        partial = last.with_name("last.ckpt.partial")
        # Collective: every rank calls it, rank 0 writes. The full state: exact resume needs it.
        trainer.save_checkpoint(partial, weights_only=False)
        if trainer.is_global_zero:
            _replace(partial, last)
            if self.keep_every_n_steps and step % self.keep_every_n_steps == 0:
                _copy(last, last.with_name(f"step={step}.ckpt"))
        trainer.strategy.barrier("StepCheckpointCallback.save")
        self.last_model_path = str(last)
        self._saved_step = step


def _replace(source: Path, target: Path) -> None:
    """Move ``source`` onto ``target`` (a file, or the directory a sharded checkpoint is)."""
    if target.is_dir():
        old = target.with_name(target.name + ".old")
        shutil.rmtree(old, ignore_errors=True)
        os.replace(target, old)
        os.replace(source, target)
        shutil.rmtree(old)
    else:
        os.replace(source, target)


def _copy(source: Path, target: Path) -> None:
    if source.is_dir():
        shutil.copytree(source, target, dirs_exist_ok=True)
    else:
        shutil.copyfile(source, target)
