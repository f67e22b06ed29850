"""Fixtures for the Lightning adapters: a tiny policy built once, and a tiny fit config."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
EXAMPLES = REPO / "flowsteer" / "examples" / "data"


@pytest.fixture(scope="session")
def tiny_policy(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from flowsteer.models.tiny import build_tiny_model

    return build_tiny_model(tmp_path_factory.mktemp("tiny") / "policy")


def tiny_config(
    run_dir: Path,
    policy: Path,
    *,
    epochs: int = 2,
    executor: dict | None = None,
    extra_callbacks=(),
) -> dict:
    """A seconds-long fit: 2 sources × 1 task × G=2, one turn of 8 tokens, 2 steps/iteration."""
    rollout = {
        "class_path": "callbacks.RolloutCallback",
        "init_args": {
            "group_size": 2,
            "max_turns": 1,
            "max_context_tokens": 2048,
            "max_new_tokens": 8,
            "seed": 0,
            "progress": False,
            **({"executor": executor} if executor else {}),
        },
    }
    return {
        "seed_everything": 0,
        "trainer": {
            "accelerator": "cpu",
            "devices": 1,
            "max_epochs": epochs,
            "log_every_n_steps": 1,
            "num_sanity_val_steps": 0,
            "limit_val_batches": 0,
            "enable_progress_bar": False,
            "enable_model_summary": False,
            "default_root_dir": str(run_dir),
            "logger": {
                "class_path": "lightning.pytorch.loggers.TensorBoardLogger",
                "init_args": {"save_dir": str(run_dir), "name": "tb"},
            },
            "callbacks": [
                rollout,
                {"class_path": "callbacks.WeightSyncCallback", "init_args": {"tolerance": 1e-3}},
                # last.ckpt after every step, under default_root_dir/checkpoints.
                {"class_path": "callbacks.StepCheckpointCallback"},
                *extra_callbacks,
            ],
        },
        "model": {
            "policy": {
                "class_path": "flowsteer.rl.policy.Policy",
                "init_args": {"model": str(policy)},
            },
            "optimizer": {"class_path": "torch.optim.AdamW", "init_args": {"lr": 1e-3}},
            "minibatch_size": 2,
            "micro_batch_size": 1,
        },
        "data": {
            "train": [
                {"source": "gsm8k", "path": str(EXAMPLES / "gsm8k_sample.jsonl")},
                {"source": "humaneval", "path": str(EXAMPLES / "humaneval_sample.jsonl")},
            ],
            "tasks_per_source": 1,
        },
    }


def write_config(path: Path, config: dict) -> Path:
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def run_fit(config: Path, *extra: str, timeout_s: float, env: dict | None = None) -> str:
    """``flowsteer fit --config CONFIG EXTRA...`` in a subprocess (one thread per rank), killed
    with its whole process group after ``timeout_s`` so a hung collective fails the test instead
    of stalling CI; returns its output and fails on a non-zero exit."""
    import os
    import signal
    import subprocess
    import sys

    env = {
        **(os.environ if env is None else env),
        "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]),
        "OMP_NUM_THREADS": "1",
    }
    process = subprocess.Popen(
        [sys.executable, "-m", "lightning_modules.cli", "fit", "--config", str(config), *extra],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,  # so the kill reaches the ranks the launcher spawned
    )
    try:
        output, _ = process.communicate(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        output, _ = process.communicate()
        pytest.fail(f"fit did not finish in {timeout_s} s (hung collective?):\n{output[-3000:]}")
    assert process.returncode == 0, output[-4000:]
    return output


def run_engine_fit(config: Path, root: Path, *extra: str, timeout_s: float) -> str:
    """`run_fit` of a multi-rank run with in-process or server engines: metrics to a CSV logger
    under ``root`` (``root/csv/version_*/metrics.csv``), no progress bar, and vLLM's engine
    core left in the trainer's process (the launcher's environment must not override it)."""
    import os

    env = dict(os.environ)
    env.pop("VLLM_ENABLE_V1_MULTIPROCESSING", None)
    return run_fit(
        config,
        "--trainer.default_root_dir",
        str(root),
        "--trainer.logger=lightning.pytorch.loggers.CSVLogger",
        f"--trainer.logger.save_dir={root}",
        "--trainer.logger.name=csv",
        "--trainer.enable_progress_bar=false",
        *extra,
        timeout_s=timeout_s,
        env=env,
    )
