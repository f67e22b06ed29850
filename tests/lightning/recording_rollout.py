"""`RecordingRollout`: a `RolloutCallback` that records, per iteration, what the asynchronous
rollout tests check (staleness, the trajectories' weights versions, the module's TIS cap) and,
per engine call, whether the engine's weights moved while it generated."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import lightning as L
import torch

from callbacks.rollout import RolloutCallback


def _checksum(module: torch.nn.Module) -> float:
    with torch.no_grad():
        return float(sum(p.double().sum() for p in module.parameters()))


class RecordingRollout(RolloutCallback):
    """Writes ``{"iterations": [...], "generations": [...]}`` to ``out`` after every rollout.

    Args:
        out: The JSON file.
        **kwargs: `RolloutCallback`'s settings.
    """

    def __init__(self, out: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.out = Path(out)
        self.record: dict[str, list[dict[str, Any]]] = {"iterations": [], "generations": []}

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        super().setup(trainer, pl_module, stage)
        engine, policy = self.engine, pl_module.policy
        generate = engine.generate_sync  # type: ignore[union-attr]
        shared = {p.data_ptr() for p in policy.model.parameters()}
        own = {p.data_ptr() for p in engine.model.parameters()}  # type: ignore[union-attr]
        self.record["shares_policy_storage"] = [bool(shared & own)]  # type: ignore[list-item]

        def recorded(requests):
            before = (_checksum(engine.model), _checksum(policy.model))  # type: ignore[union-attr]
            out = generate(requests)
            after = (_checksum(engine.model), _checksum(policy.model))  # type: ignore[union-attr]
            self.record["generations"].append(
                {
                    "engine_changed": before[0] != after[0],
                    "policy_changed": before[1] != after[1],
                }
            )
            return out

        engine.generate_sync = recorded  # type: ignore[union-attr]

    def on_rollout(self, trainer, pl_module, trajectories, advantages, seconds) -> None:
        super().on_rollout(trainer, pl_module, trajectories, advantages, seconds)
        self.record["iterations"].append(
            {
                "iteration": trainer.current_epoch,
                "global_step": trainer.global_step,
                "staleness": self.staleness,
                "versions": sorted({t.weights_version for t in trajectories}),
                "tis_cap": pl_module.tis_cap,
                "rewards": [t.reward for t in trajectories],
            }
        )
        self.out.write_text(json.dumps(self.record))
