"""`FixedRollout`: stands in for `RolloutCallback` with a fixed, seeded buffer, so single-process,
DDP and FSDP2 runs train on exactly the same data (each rank takes its share of the rows), and
writes the final full weights for comparison."""

from __future__ import annotations

import zlib
from pathlib import Path

import lightning as L
import torch

from flowsteer.rollout.batch import collate
from flowsteer.rollout.trajectory import Trajectory


class FixedRollout(L.Callback):
    """Every iteration trains on the same ``rows`` seeded sequences, split over the ranks.

    Args:
        rows: Sequences in the whole buffer (over all ranks).
        length: Tokens per sequence (the last half are "sampled": mask 1).
        out: Where rank 0 writes the final full state dict of the policy.
        seed: Seeds the token ids and advantages.
        use_tasks: Draw the iteration's tasks from the DataModule and seed the buffer with their
            ids, so the data depends on the task stream's position (as real rollouts do); the
            buffer's mean advantage is logged as ``fixed/reward``.
    """

    def __init__(
        self,
        rows: int = 4,
        length: int = 24,
        out: str = "weights.pt",
        seed: int = 0,
        use_tasks: bool = False,
    ) -> None:
        self.rows, self.length, self.out, self.seed = rows, length, out, seed
        self.use_tasks = use_tasks

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        pl_module.rollout_size = self.rows // trainer.world_size

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        seed = self.seed
        if self.use_tasks:
            ids = ",".join(t.id for t in trainer.datamodule.next_train_tasks())
            seed += zlib.crc32(ids.encode())
        generator = torch.Generator().manual_seed(seed)
        vocab = pl_module.policy.tokenizer.vocab_size
        trajectories = []
        for i in range(self.rows):
            n = self.length - (i % 3)  # ragged, so padding and token counts differ per row
            ids = torch.randint(10, vocab, (n,), generator=generator).tolist()
            mask = [0] * (n // 2) + [1] * (n - n // 2)
            trajectories.append(
                Trajectory(
                    ids, mask, [-1.0 * m for m in mask], reward=float(i % 2), group_id=i // 2
                )
            )
        advantages = torch.randn(self.rows, generator=generator)
        if self.use_tasks and trainer.logger is not None:
            trainer.logger.log_metrics(
                {"fixed/reward": float(advantages.mean())}, trainer.global_step
            )
        batch = collate(trajectories, advantages, pl_module.policy.tokenizer.pad_token_id)
        share = self.rows // trainer.world_size
        mine = batch.select(
            list(range(trainer.global_rank * share, (trainer.global_rank + 1) * share))
        )
        pl_module.set_rollout(mine, list(range(share)))

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

        if trainer.world_size > 1:  # every rank joins the gather (FSDP2 shards are DTensors)
            options = StateDictOptions(full_state_dict=True, cpu_offload=True)
            state = get_model_state_dict(pl_module.policy, options=options)
        else:
            state = pl_module.policy.state_dict()
        if trainer.is_global_zero:
            torch.save({k: v.detach().cpu().clone() for k, v in state.items()}, Path(self.out))
