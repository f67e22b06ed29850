"""DDP and FSDP2 (ModelParallelStrategy + fully_shard) with 2 CPU processes over gloo give the same
update as one process on the same data, and DDP logs the same `train/*` statistics (reduced over
the ranks); the FSDP2 run also checkpoints and resumes. Every run is a real `flowsteer fit`
subprocess under a hard kill timeout (a hung collective fails the test)."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest
import torch

from tests.lightning.conftest import REPO, run_fit, write_config

TIMEOUT_S = 240


def _fit(config: Path, *extra: str) -> None:
    run_fit(config, *extra, timeout_s=TIMEOUT_S)


def _config(
    tmp_path: Path,
    name: str,
    policy: Path,
    *,
    epochs: int,
    strategy: dict | str | None,
    loss_agg: str = "token-mean",
) -> Path:
    world = 1 if strategy is None else 2
    config = {
        "seed_everything": 0,
        "trainer": {
            "accelerator": "cpu",
            "devices": world,
            "max_epochs": epochs,
            "logger": {
                "class_path": "lightning.pytorch.loggers.CSVLogger",
                "init_args": {"save_dir": str(tmp_path / name), "name": "csv"},
            },
            "log_every_n_steps": 1,
            "enable_progress_bar": False,
            "enable_model_summary": False,
            "num_sanity_val_steps": 0,
            "limit_val_batches": 0,
            "default_root_dir": str(tmp_path / name),
            "callbacks": [
                {
                    "class_path": "tests.lightning.fixed_rollout.FixedRollout",
                    "init_args": {"rows": 4, "out": str(tmp_path / f"{name}.pt")},
                },
                {  # what the configs use; under FSDP2 last.ckpt is a sharded directory
                    "class_path": "callbacks.StepCheckpointCallback",
                    "init_args": {"dirpath": str(tmp_path / name / "ckpt")},
                },
            ],
            **({"strategy": strategy} if strategy is not None else {}),
        },
        "model": {
            "policy": {
                "class_path": "flowsteer.rl.policy.Policy",
                "init_args": {"model": str(policy)},
            },
            # SGD, not Adam: Adam is blind to a wrong gradient scale, SGD is not.
            "optimizer": {"class_path": "torch.optim.SGD", "init_args": {"lr": 1.0}},
            "minibatch_size": 4 // world,  # one optimizer step per iteration over all 4 rows
            "micro_batch_size": 1,
            "ppo_epochs": 2,  # the second pass has ratios ≠ 1: clip and max statistics
            "max_grad_norm": None,
            "loss_agg": loss_agg,
        },
        "data": {
            "train": [
                {
                    "source": "gsm8k",
                    "path": str(REPO / "flowsteer/examples/data/gsm8k_sample.jsonl"),
                }
            ],
            "tasks_per_source": 2,
        },
    }
    return write_config(tmp_path / f"{name}.yaml", config)


def _assert_same(a: Path, b: Path, base: Path) -> None:
    left, right = torch.load(a), torch.load(b)
    start = torch.load(base) if base.exists() else None
    assert left.keys() == right.keys()
    for key in left:
        torch.testing.assert_close(left[key], right[key], rtol=1e-4, atol=1e-5, msg=key)
    if start is not None:  # the update really moved the weights
        assert any(not torch.equal(left[k], start[k]) for k in left)


def _train_stats(run: Path) -> list[dict[str, float]]:
    """The logged ``train/*`` values of every step, in order."""
    (path,) = run.glob("csv/version_*/metrics.csv")
    with path.open() as f:
        rows = [r for r in csv.DictReader(f) if r.get("train/tokens")]
    return [{k: float(v) for k, v in r.items() if k.startswith("train/") and v} for r in rows]


def _assert_same_stats(single: Path, ranks: Path) -> None:
    expected, got = _train_stats(single), _train_stats(ranks)
    assert len(expected) == len(got) == 4  # 2 iterations × 2 passes
    for want, have in zip(expected, got, strict=True):
        assert have.keys() == want.keys()
        for name, value in want.items():
            assert have[name] == pytest.approx(value, rel=1e-3, abs=1e-5), name
    assert max(r["train/ratio_max"] for r in expected) > 1.01  # the maxima have teeth


@pytest.fixture(scope="module")
def single(tmp_path_factory: pytest.TempPathFactory, tiny_policy: Path) -> Path:
    tmp = tmp_path_factory.mktemp("single")
    _fit(_config(tmp, "zero", tiny_policy, epochs=0, strategy=None))  # the starting weights
    _fit(_config(tmp, "single", tiny_policy, epochs=2, strategy=None))
    return tmp


@pytest.mark.slow
def test_ddp_two_processes_equals_one(single: Path, tmp_path: Path, tiny_policy: Path) -> None:
    _fit(_config(tmp_path, "ddp", tiny_policy, epochs=2, strategy="ddp"))
    _assert_same(single / "single.pt", tmp_path / "ddp.pt", single / "zero.pt")
    _assert_same_stats(single / "single", tmp_path / "ddp")


@pytest.mark.slow
def test_ddp_sequence_mean_equals_one_process(
    single: Path, tmp_path: Path, tiny_policy: Path
) -> None:
    """Per-sequence weighting over ranks: the global sequence count and padded length."""
    agg = "seq-mean-token-sum-norm"
    _fit(_config(tmp_path, "one", tiny_policy, epochs=2, strategy=None, loss_agg=agg))
    _fit(_config(tmp_path, "ddp", tiny_policy, epochs=2, strategy="ddp", loss_agg=agg))
    _assert_same(tmp_path / "one.pt", tmp_path / "ddp.pt", single / "zero.pt")
    _assert_same_stats(tmp_path / "one", tmp_path / "ddp")


@pytest.mark.slow
def test_fsdp2_two_processes_equals_one_and_resumes(
    single: Path, tmp_path: Path, tiny_policy: Path
) -> None:
    fsdp = {
        "class_path": "lightning.pytorch.strategies.ModelParallelStrategy",
        "init_args": {"data_parallel_size": 2, "tensor_parallel_size": 1},
    }
    _fit(_config(tmp_path, "fsdp", tiny_policy, epochs=1, strategy=fsdp))
    last = tmp_path / "fsdp" / "ckpt" / "last.ckpt"
    assert last.is_dir()  # a sharded (distributed) checkpoint
    _fit(_config(tmp_path, "fsdp", tiny_policy, epochs=2, strategy=fsdp), "--ckpt_path", str(last))
    _assert_same(single / "single.pt", tmp_path / "fsdp.pt", single / "zero.pt")
