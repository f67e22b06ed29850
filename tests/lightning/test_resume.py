"""Exact resume: a run SIGKILLed in the middle of an iteration and resumed with ``--ckpt_path``
logs the same per-step losses and per-iteration rewards as the run that was never interrupted."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from tests.lightning.conftest import REPO, tiny_config, write_config
from tests.lightning.test_fit import scalars

COMPARED = ("train/loss", "train/grad_norm", "train/approx_kl_old", "train/ratio_mean")


def _fit(config: Path, *extra: str, timeout: float = 240) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]),
    }
    return subprocess.run(
        [sys.executable, "-m", "lightning_modules.cli", "fit", "--config", str(config), *extra],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def _config(tmp_path: Path, name: str, policy: Path, kill_at: int | None, rollout: str) -> Path:
    extra = (
        [{"class_path": "tests.lightning.killer.KillAtStep", "init_args": {"step": kill_at}}]
        if kill_at
        else []
    )
    config = tiny_config(tmp_path / name, policy, epochs=3, extra_callbacks=extra)
    if rollout == "fixed":
        # The untrained tiny policy earns -1 on every episode (advantages 0, nothing to learn),
        # so this variant trains on seeded buffers drawn per task batch: real losses and updates.
        config["trainer"]["callbacks"][0] = {
            "class_path": "tests.lightning.fixed_rollout.FixedRollout",
            "init_args": {"rows": 4, "use_tasks": True, "out": str(tmp_path / f"{name}.pt")},
        }
        config["trainer"]["callbacks"].pop(1)  # no engine to sync
        config["model"]["optimizer"]["init_args"]["lr"] = 1e-2
    # LoRA with dropout kept: the update consumes the global RNG, so its state must be restored
    # too (dropout is off by default; this run keeps it on purpose).
    config["model"]["policy"]["init_args"]["lora"] = {"r": 4, "alpha": 8, "dropout": 0.2}
    config["model"]["policy"]["init_args"]["disable_dropout"] = False
    config["model"]["ppo_epochs"] = 2
    return write_config(tmp_path / f"{name}.yaml", config)


@pytest.mark.slow
@pytest.mark.parametrize("rollout", ["episodes", "fixed"])
def test_sigkill_mid_iteration_then_resume_matches_uninterrupted(
    tmp_path: Path, tiny_policy: Path, rollout: str
) -> None:
    whole = _fit(_config(tmp_path, "whole", tiny_policy, None, rollout))
    assert whole.returncode == 0, whole.stderr[-3000:]

    # 4 steps per iteration (2 minibatches × 2 passes): die after step 5, inside iteration 1.
    killed = _fit(_config(tmp_path, "killed", tiny_policy, 5, rollout))
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-3000:]
    last = tmp_path / "killed" / "checkpoints" / "last.ckpt"
    assert torch.load(last, weights_only=False)["global_step"] == 5

    resumed = _fit(
        _config(tmp_path, "killed", tiny_policy, None, rollout), "--ckpt_path", str(last)
    )
    assert resumed.returncode == 0, resumed.stderr[-3000:]

    expected, got = scalars(tmp_path / "whole" / "tb"), scalars(tmp_path / "killed" / "tb")
    rewards = "rollout/reward/total" if rollout == "episodes" else "fixed/reward"
    for name in (*COMPARED, rewards):
        want = dict(expected[name])
        have = dict(got[name])  # the resumed run's version directory holds the later steps
        assert sorted(have) == sorted(want), name
        for step, value in want.items():
            assert have[step] == pytest.approx(value, rel=1e-5, abs=1e-7), (name, step)
    assert len(expected["train/loss"]) == 12 and len(expected[rewards]) == 3
    if rollout == "fixed":  # the losses are not trivially zero, so the comparison has teeth
        assert len({round(v, 6) for _, v in expected["train/loss"]}) > 6
