"""`flowsteer fit` end to end on the tiny policy: TensorBoard scalars, checkpoints, resume."""

from __future__ import annotations

import warnings
from pathlib import Path

import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from lightning_modules.cli import main
from tests.lightning.conftest import tiny_config, write_config

# The scalars the README's metrics table documents (per-source accuracy has one per source).
DOCUMENTED = [
    "train/loss",
    "train/pg_loss",
    "train/clip_frac_low",
    "train/clip_frac_high",
    "train/approx_kl_old",
    "train/mismatch_abs",
    "train/mismatch_kl",
    "train/entropy",
    "train/grad_norm",
    "train/lr",
    "rollout/reward/total",
    "rollout/reward/div",
    "rollout/reward/answer",
    "rollout/accuracy/gsm8k",
    "rollout/accuracy/humaneval",
    "rollout/div_pass_rate",
    "rollout/shortcut_rate",
    "rollout/finish_rate",
    "rollout/invalid_action_rate",
    "rollout/turns",
    "rollout/operators",
    "rollout/policy_tokens",
    "rollout/backend_calls",
    "rollout/backend_tokens",
    "rollout/zero_variance_groups",
    "rollout/failed_episodes",
    "backend/faults",
    "time/rollout_s",
    "time/update_s",
    "time/sync_s",
    "sync/probe_logprob_diff",
]


def scalars(run_dir: Path) -> dict[str, list[tuple[int, float]]]:
    out: dict[str, list[tuple[int, float]]] = {}
    for events in sorted(run_dir.rglob("events.out.tfevents.*")):
        acc = EventAccumulator(str(events), size_guidance={"scalars": 0, "tensors": 0})
        acc.Reload()
        for tag in acc.Tags()["scalars"]:
            out.setdefault(tag, []).extend((e.step, e.value) for e in acc.Scalars(tag))
    return out


def test_fit_writes_documented_scalars_checkpoint_and_resumes(
    tmp_path: Path, tiny_policy: Path
) -> None:
    config = write_config(
        tmp_path / "fit.yaml", tiny_config(tmp_path / "run", tiny_policy, epochs=2)
    )
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert main(["fit", "--config", str(config)]) == 0
    # RolloutBatch and TaskBatch move with Lightning's own transfer (they define `.to`); an
    # override of the hook would make every fit warn about it.
    assert not [w for w in caught if "transfer_batch_to_device" in str(w.message)]

    logged = scalars(tmp_path / "run" / "tb")
    missing = [name for name in DOCUMENTED if name not in logged]
    assert not missing, f"not in TensorBoard: {missing}"
    assert len(logged["train/loss"]) == 2 * 2  # 2 iterations × 2 minibatch steps
    # A minibatch without a sampled token (episodes cut before their first turn) is no
    # optimizer step: it logs zeros, and global_step does not count it.
    trained = sum(1 for _, tokens in logged["train/tokens"] if tokens > 0)
    for (_, tokens), (_, ratio) in zip(
        logged["train/tokens"], logged["train/ratio_mean"], strict=True
    ):
        assert tokens > 0 or ratio == 0.0
    assert len(logged["rollout/reward/total"]) == 2
    text = EventAccumulator(str(next((tmp_path / "run" / "tb").rglob("events.*")))).Reload()
    assert "rollout/samples/text_summary" in text.Tags()["tensors"]

    last = tmp_path / "run" / "checkpoints" / "last.ckpt"
    checkpoint = torch.load(last, weights_only=False)
    assert checkpoint["global_step"] == trained
    assert checkpoint["optimizer_states"][0]["state"]  # AdamW moments are saved
    assert checkpoint["TaskDataModule"]["mixture"]["step"] == 2
    assert (
        len(checkpoint["flowsteer"]["ranks"]) == 1 and "rng" in checkpoint["flowsteer"]["ranks"][0]
    )

    # Resume for one more iteration from the checkpoint.
    assert (
        main(
            ["fit", "--config", str(config), "--trainer.max_epochs", "3", "--ckpt_path", str(last)]
        )
        == 0
    )
    resumed = torch.load(last, weights_only=False)
    tokens = scalars(tmp_path / "run" / "tb")["train/tokens"]
    assert len(tokens) == 3 * 2
    assert resumed["global_step"] == sum(1 for _, n in tokens if n > 0) > trained
    assert resumed["TaskDataModule"]["mixture"]["step"] == 3


def test_validate_and_test_play_greedy_episodes_per_source(
    tmp_path: Path, tiny_policy: Path
) -> None:
    config = tiny_config(tmp_path / "run", tiny_policy, epochs=1)
    held_out = [dict(f, limit=2) for f in config["data"]["train"]]
    config["data"].update(val=held_out, test=held_out)
    path = write_config(tmp_path / "eval.yaml", config)
    assert main(["validate", "--config", str(path), "--trainer.limit_val_batches", "1.0"]) == 0
    assert main(["test", "--config", str(path)]) == 0
    logged = scalars(tmp_path / "run" / "tb")
    for stage in ("val", "test"):
        for source in ("gsm8k", "humaneval"):
            (value,) = [v for _, v in logged[f"{stage}/accuracy/{source}"]]
            assert 0.0 <= value <= 1.0
