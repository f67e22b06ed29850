"""`WeightSyncCallback`: after each iteration's updates, push the policy to the rollout engine and
check that the engine now serves it.

The check is twofold: the engine must report the new weights version, and a probe (a fixed prompt
sampled by the engine, its tokens re-scored by the trainer) must agree within a tolerance, which
catches an engine serving different weights altogether (a wrong model, a failed load). Every rank
syncs its own engine, so sharded (FSDP2) parameters are gathered collectively, never on one rank.
"""

from __future__ import annotations

import time
from typing import Any

import lightning as L
import torch

from flowsteer.rollout.engine import GenerationRequest, SamplingParams


class WeightSyncCallback(L.Callback):
    """Syncs the rollout engine to the policy after every iteration.

    Args:
        probe_prompt: The fixed user message of the log-prob probe.
        probe_tokens: Tokens the engine samples for the probe (0: no probe).
        tolerance: Largest mean |engine − trainer| log-prob on the probe tokens before the sync
            counts as failed (fp32: 1e-4 is plenty; bf16 engines need about 0.05).
    """

    def __init__(
        self,
        probe_prompt: str = "Build a workflow that adds 2 and 3.",
        probe_tokens: int = 8,
        tolerance: float = 0.05,
    ) -> None:
        if probe_tokens < 0:
            raise ValueError(f"WeightSyncCallback: probe_tokens must be >= 0, got {probe_tokens}")
        if not tolerance > 0.0:
            raise ValueError(f"WeightSyncCallback: tolerance must be > 0, got {tolerance!r}")
        self.probe_prompt = probe_prompt
        self.probe_tokens = probe_tokens
        self.tolerance = tolerance
        self.synced_version = 0
        self.last_probe_diff: float | None = None

    def _rollout(self, trainer: L.Trainer) -> Any:
        from callbacks.rollout import RolloutCallback

        for callback in trainer.callbacks:
            if isinstance(callback, RolloutCallback):
                return callback
        raise ValueError("WeightSyncCallback needs a RolloutCallback in trainer.callbacks")

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        # A resumed run starts a fresh engine on the base weights: bring it to the checkpoint's.
        rollout = self._rollout(trainer)
        begin_run = getattr(rollout.engine, "begin_run", None)
        if begin_run is not None:  # a fresh run id per fit: reruns never reuse adapter names
            begin_run()
        if rollout.engine.weights_version != trainer.global_step:
            self.sync(trainer, pl_module)

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.sync(trainer, pl_module)

    def sync(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        """Push the policy as version ``global_step``, verify, and log the timing."""
        rollout = self._rollout(trainer)
        # Under async rollouts the engine may be sampling the next iteration: push after it.
        rollout.join_prefetch()
        engine, version = rollout.engine, trainer.global_step
        started = time.perf_counter()
        rollout.run_async(engine.sync_weights(pl_module.policy, version))
        sync_s = time.perf_counter() - started
        if engine.weights_version != version:
            raise RuntimeError(
                f"WeightSyncCallback: pushed version {version} but the engine reports "
                f"{engine.weights_version}"
            )
        self.synced_version = version
        pl_module.log("time/sync_s", sync_s, on_step=False, on_epoch=True, batch_size=1)
        if self.probe_tokens:
            diff = self.probe(rollout, pl_module)
            self.last_probe_diff = diff
            pl_module.log(
                "sync/probe_logprob_diff", diff, on_step=False, on_epoch=True, batch_size=1
            )
            if diff > self.tolerance:
                raise RuntimeError(
                    f"WeightSyncCallback: after syncing version {version} the engine's log-probs "
                    f"differ from the trainer's by {diff:.4g} per token on the probe "
                    f"(tolerance {self.tolerance}); the engine does not serve the new weights"
                )

    def probe(self, rollout: Any, pl_module: L.LightningModule) -> float:
        """Mean |engine − trainer| log-prob over the probe's sampled tokens."""
        tokenizer = pl_module.policy.tokenizer
        prompt = tokenizer.apply_chat_template(
            [{"role": "user", "content": self.probe_prompt}],
            add_generation_prompt=True,
            tokenize=True,
        )
        if hasattr(prompt, "keys"):  # transformers may return a BatchEncoding
            prompt = prompt["input_ids"]
        # At the rollouts' temperature: the probe checks the log-probs the update will compare.
        temperature = rollout.sampling.temperature
        params = SamplingParams(max_tokens=self.probe_tokens, temperature=temperature, seed=0)
        generation = rollout.run_async(
            rollout.engine.generate([GenerationRequest(list(prompt), params)])
        )[0]
        if not generation.token_ids:
            return 0.0
        ids = torch.tensor([list(prompt) + generation.token_ids], device=pl_module.device)
        was_training = pl_module.policy.training
        pl_module.policy.eval()
        with torch.no_grad():
            scored = pl_module.policy.token_logprobs(
                ids, torch.ones_like(ids), temperature=params.logprob_temperature
            ).logprobs[0]
        pl_module.policy.train(was_training)
        trainer_lp = scored[len(prompt) :].float().cpu()
        engine_lp = torch.tensor(generation.logprobs, dtype=torch.float32)
        return float((trainer_lp - engine_lp).abs().mean())

    def state_dict(self) -> dict[str, Any]:
        return {"synced_version": self.synced_version}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.synced_version = int(state_dict.get("synced_version", 0))
