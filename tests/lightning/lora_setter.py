"""Callbacks that give the trained weights known, non-zero changes before each weight sync.

On the tiny model every reward is the same, so the update leaves peft's zero-initialised
``lora_B`` at zero (and full weights almost where they were) and a pushed adapter would equal
the base model: a server that ignored it, an engine that kept its old weights, or an adapter
saved from one rank's shards, would go unnoticed. Setting each ``lora_B`` to a seeded random
tensor (a function of its layer, its projection and the step) makes every pushed adapter differ
from the base and from the previous one, and lets a test recompute what was written;
`SeededWeights` does the same for full fine-tuning, by a seeded shift of every trainable tensor.
"""

from __future__ import annotations

import re
import zlib

import lightning as L
import torch

_MODULE = re.compile(r"layers\.\d+\..*?_proj")


def lora_b_key(name: str) -> str | None:
    """``layers.{i}.{block}.{proj}`` for a ``lora_B`` parameter or saved tensor name, else None
    (the same for the trainer's parameter names and peft's saved keys)."""
    if "lora_B" not in name:
        return None
    match = _MODULE.search(name)
    return match.group(0) if match else None


def seeded_lora_b(key: str, step: int, shape: torch.Size) -> torch.Tensor:
    """The full ``lora_B`` tensor that `SeededLoraB` sets for module ``key`` at ``step``."""
    generator = torch.Generator().manual_seed(zlib.crc32(f"{key}@{step}".encode()))
    return 0.2 * torch.randn(shape, generator=generator)


class SeededLoraB(L.Callback):
    """At each epoch end (list it before `WeightSyncCallback`), set every ``lora_B`` to
    `seeded_lora_b` at the current ``global_step``; FSDP2 shards get their part of it."""

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        from torch.distributed.tensor import DTensor, distribute_tensor

        with torch.no_grad():
            for name, param in pl_module.policy.named_parameters():
                key = lora_b_key(name)
                if key is None:
                    continue
                full = seeded_lora_b(key, trainer.global_step, param.shape).to(param.dtype)
                if isinstance(param, DTensor):  # every rank, same order: a collective
                    full = distribute_tensor(full, param.device_mesh, param.placements)
                param.copy_(full)


def seeded_shift(name: str, step: int, shape: torch.Size) -> torch.Tensor:
    """The shift `SeededWeights` adds to the full tensor ``name`` at ``step``."""
    generator = torch.Generator().manual_seed(zlib.crc32(f"{name}@{step}".encode()))
    return 0.05 * torch.randn(shape, generator=generator)


class SeededWeights(SeededLoraB):
    """`SeededLoraB` for a LoRA policy; with full fine-tuning, adds `seeded_shift` to every
    trainable tensor at each epoch end (list it before `WeightSyncCallback`)."""

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if pl_module.policy.is_lora:
            super().on_train_epoch_end(trainer, pl_module)
            return
        from torch.distributed.tensor import DTensor, distribute_tensor

        with torch.no_grad():
            for name, param in pl_module.policy.named_parameters():
                if not param.requires_grad:
                    continue
                shift = seeded_shift(name, trainer.global_step, param.shape).to(param.dtype)
                if isinstance(param, DTensor):  # every rank, same order: a collective
                    shift = distribute_tensor(shift, param.device_mesh, param.placements)
                param.add_(shift.to(param.device))
