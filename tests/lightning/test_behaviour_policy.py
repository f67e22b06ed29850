"""The update trains the policy that sampled: at a sampling temperature other than 1 and with LoRA
dropout configured, the first minibatch of every iteration has ratio 1 and the engine/trainer
mismatch is ~0 (docs/design.md §5). Real `flowsteer fit` runs on the tiny policy; the module's
`score_buffer` and `cwrpo_loss` are wrapped (and still called) to read what the update saw."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pytest
import torch

import lightning_modules.cwrpo_module as cwrpo_module
from lightning_modules.cli import main
from tests.lightning.conftest import tiny_config, write_config
from tests.lightning.test_fit import scalars

TEMPERATURE = 0.7
LORA = {"r": 4, "alpha": 8, "dropout": 0.05}  # the paper config's LoRA dropout
FIRST = 2  # micro-batches in the first minibatch (minibatch_size 2, micro_batch_size 1)


class UpdateRecorder:
    """Wraps the module's `score_buffer` and `cwrpo_loss`; records each iteration's scoring
    (with the tempered log-probs recomputed naively from the model at that moment) and losses."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, temperature: float) -> None:
        self.temperature = temperature
        self.iterations: list[dict[str, Any]] = []
        score, loss = cwrpo_module.score_buffer, cwrpo_module.cwrpo_loss

        def recording_score(policy, batch, *args, **kwargs):
            scored = score(policy, batch, *args, **kwargs)
            self.iterations.append({"scored": scored, "naive": self._naive(policy, batch)})
            self.iterations[-1]["losses"] = []
            return scored

        def recording_loss(logprobs, old_logprobs, advantages, loss_mask, **kwargs):
            result = loss(logprobs, old_logprobs, advantages, loss_mask, **kwargs)
            self.iterations[-1]["losses"].append(
                {
                    "logprobs": logprobs.detach().clone(),
                    "old": old_logprobs.clone(),
                    "rollout": kwargs["rollout_logprobs"].clone(),
                    "mask": loss_mask.bool(),
                    "stats": result.stats,
                }
            )
            return result

        monkeypatch.setattr(cwrpo_module, "score_buffer", recording_score)
        monkeypatch.setattr(cwrpo_module, "cwrpo_loss", recording_loss)

    @torch.no_grad()
    def _naive(self, policy, batch) -> torch.Tensor:
        """``[B, T]`` log_softmax(logits / T) of the full model forward, eval mode."""
        was_training = policy.training
        policy.eval()
        mask = batch.attention_mask
        positions = (mask.cumsum(-1) - 1).clamp(min=0)
        logits = policy.model(
            input_ids=batch.input_ids, attention_mask=mask, position_ids=positions
        ).logits
        policy.train(was_training)
        logp = (logits.float() / self.temperature).log_softmax(-1)[:, :-1]
        lp = logp.gather(-1, batch.input_ids[:, 1:, None]).squeeze(-1)
        return torch.nn.functional.pad(lp, (1, 0))

    def first_minibatches(self) -> list[list[dict[str, Any]]]:
        return [iteration["losses"][:FIRST] for iteration in self.iterations]


def _ratio_gap(micro: dict[str, Any]) -> float:
    """max |log ρ| over the trained tokens: 0 means ratio exactly 1."""
    return float((micro["logprobs"] - micro["old"])[micro["mask"]].abs().max())


def test_at_a_sampling_temperature_the_update_scores_the_behaviour_policy(
    tmp_path: Path, tiny_policy: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = tiny_config(tmp_path / "run", tiny_policy, epochs=1)
    config["trainer"]["callbacks"][0]["init_args"]["temperature"] = TEMPERATURE
    config["model"]["policy"]["init_args"]["lora"] = LORA
    recorder = UpdateRecorder(monkeypatch, TEMPERATURE)
    assert main(["fit", "--config", str(write_config(tmp_path / "fit.yaml", config))]) == 0

    (iteration,) = recorder.iterations
    scored, mask = iteration["scored"], iteration["scored"].loss_mask.bool()
    # The old log-probs are of logits / T, the distribution the engine sampled from ...
    assert float((scored.old_logprobs - iteration["naive"])[mask].abs().max()) < 1e-5
    # ... and so are the engine's: the mismatch metric sees float noise only.
    assert float((scored.old_logprobs - scored.rollout_logprobs)[mask].abs().max()) < 1e-4
    for micro in iteration["losses"][:FIRST]:
        assert _ratio_gap(micro) < 1e-5
        assert abs(float(micro["stats"].ratio_max) - 1.0) < 1e-5
        assert float(micro["stats"].mismatch_abs) < 1e-5
    (probe,) = [v for _, v in scalars(tmp_path / "run" / "tb")["sync/probe_logprob_diff"]]
    assert probe < 1e-4  # the weight-sync probe also compares at the sampling temperature


def _fixed_rollout_config(tmp_path: Path, tiny_policy: Path, policy_args: dict) -> Path:
    """Two iterations on seeded buffers with random advantages, so the adapter really moves
    (the untrained tiny policy's episodes all score alike: no update, LoRA B stays 0)."""
    config = tiny_config(tmp_path / "run", tiny_policy, epochs=2)
    config["trainer"]["callbacks"][0] = {
        "class_path": "tests.lightning.fixed_rollout.FixedRollout",
        "init_args": {"rows": 4, "out": str(tmp_path / "weights.pt")},
    }
    config["trainer"]["callbacks"].pop(1)  # no engine to sync
    config["model"]["optimizer"]["init_args"]["lr"] = 1e-2
    config["model"]["policy"]["init_args"].update(policy_args)
    return write_config(tmp_path / "fit.yaml", config)


@pytest.mark.parametrize("disable_dropout", [None, False], ids=["default", "kept"])
def test_lora_dropout_does_not_move_the_first_minibatchs_ratio(
    tmp_path: Path,
    tiny_policy: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    disable_dropout: bool | None,
) -> None:
    policy_args: dict[str, Any] = {"lora": LORA}
    if disable_dropout is not None:
        policy_args["disable_dropout"] = disable_dropout
    recorder = UpdateRecorder(monkeypatch, 1.0)
    with caplog.at_level(logging.WARNING, logger="flowsteer.rl.policy"):
        assert (
            main(
                ["fit", "--config", str(_fixed_rollout_config(tmp_path, tiny_policy, policy_args))]
            )
            == 0
        )
    warned = [r for r in caplog.records if "disable_dropout=False" in r.getMessage()]

    first = recorder.first_minibatches()
    assert len(first) == 2 and all(len(m) == FIRST for m in first)
    gaps = [max(_ratio_gap(micro) for micro in minibatch) for minibatch in first]
    if disable_dropout is None:  # the default: ratio 1 on every iteration's first minibatch
        assert max(gaps) < 1e-5, gaps
        assert not warned
    else:  # dropout kept: once the adapter has moved, the ratio is off, and the run said so
        assert gaps[1] > 1e-4, gaps
        assert len(warned) == 1 and "lora_dropout=0.05" in warned[0].getMessage()
