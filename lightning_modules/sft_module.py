"""`SFTModule`: the supervised warm start of the policy on expert episodes (`flowsteer sft`).

Each training step scores a `RolloutBatch` of expert episodes with `Policy.token_logprobs` and
minimises `sft_loss` on the policy's own tokens (mask 1). Optimisation is automatic (Lightning's
gradient accumulation and clipping apply). At the end of fit the policy is written as a plain
model directory (`Policy.save_pretrained`: LoRA merged), which `flowsteer fit` starts from with
``model.policy.init_args.model: <that directory>``; Lightning checkpoints come from the
configured `ModelCheckpoint` as usual.
"""

from __future__ import annotations

from pathlib import Path

import lightning as L
import torch
from lightning.pytorch.cli import LRSchedulerCallable, OptimizerCallable

from flowsteer.rl.policy import Policy
from flowsteer.rl.sft import SFTLossAgg, sft_loss
from flowsteer.rollout.batch import RolloutBatch


class SFTModule(L.LightningModule):
    """Holds the policy (LoRA or full) and imitates expert episodes.

    Args:
        policy: The policy to warm-start.
        optimizer: Builds the optimizer from the trainable parameters (YAML: ``class_path``).
        scheduler: Builds the LR scheduler, stepped every optimizer step.
        loss_agg: ``token-mean`` or ``seq-mean-token-mean`` (see `sft_loss`).
        export_dir: Where the trained model is saved at the end of fit (LoRA merged, with its
            tokenizer); ``None``: ``<trainer.default_root_dir>/model``.
    """

    def __init__(
        self,
        policy: Policy,
        optimizer: OptimizerCallable = torch.optim.AdamW,
        scheduler: LRSchedulerCallable | None = None,
        loss_agg: SFTLossAgg = "token-mean",
        export_dir: str | None = None,
    ) -> None:
        super().__init__()
        self.save_hyperparameters(ignore=["policy", "optimizer", "scheduler"])
        self.policy = policy
        self.optimizer_factory = optimizer
        self.scheduler_factory = scheduler
        self.loss_agg = loss_agg
        self.export_dir = export_dir
        self.exported_to: Path | None = None

    def configure_optimizers(self):
        optimizer = self.optimizer_factory(self.policy.trainable_parameters())
        if self.scheduler_factory is None:
            return optimizer
        scheduler = self.scheduler_factory(optimizer)
        return {
            "optimizer": optimizer,
            "lr_scheduler": {"scheduler": scheduler, "interval": "step"},
        }

    def on_train_start(self) -> None:
        self.policy.train()  # from_pretrained returns eval mode

    def training_step(self, batch: RolloutBatch, batch_idx: int) -> torch.Tensor:
        out = self.policy.token_logprobs(batch.input_ids, batch.attention_mask)
        result = sft_loss(out.logprobs, batch.loss_mask, loss_agg=self.loss_agg)
        self.log("train/loss", result.loss.detach(), prog_bar=True, batch_size=len(batch))
        self.log_dict(result.stats.to_dict(prefix="train"), batch_size=len(batch))
        return result.loss

    def on_fit_end(self) -> None:
        """Write the model directory `flowsteer fit` starts from (rank zero only)."""
        target = Path(self.export_dir or Path(self.trainer.default_root_dir) / "model")
        if self.trainer.is_global_zero:
            self.policy.save_pretrained(target)
        self.exported_to = target


__all__ = ["SFTModule"]
