"""The paper's topology for real on 2 CPU ranks: `flowsteer fit` on configs/paper_cpu_2rank.yaml
(FSDP2 via ModelParallelStrategy, one in-process `VLLMEngine` per rank, LoRA), and DDP with full
fine-tuning. Every run is a subprocess under a hard kill timeout (a hung collective fails).

A finished run means every rank's `WeightSyncCallback` pushed the weights and its probe agreed
with the trainer (it raises otherwise, on the rank that disagrees). On the tiny model every reward
is equal and the update barely moves the weights, so `SeededWeights` (listed before the sync)
gives every version a seeded change that moves the log-probs over 10x the probe tolerance
(tests/lightning/test_seeded_weights.py): an engine that kept its old weights fails the probe. Budget: the FSDP2 case runs
1 iteration, then resumes from its sharded checkpoint for a 2nd; DDP with full weights likewise;
FSDP2 full and DDP LoRA run 1 iteration each. All are `slow` and `vllm`: .ci/run's vLLM step runs
them (about 4 minutes together on a loaded 2-core machine)."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest
import yaml

from tests.lightning.conftest import run_engine_fit

REPO = Path(__file__).resolve().parents[2]
CONFIG = REPO / "configs" / "paper_cpu_2rank.yaml"
TIMEOUT_S = 420
PROBE_TOLERANCE = 0.01  # in-process engines with gathered full tensors agree to about 1e-6

pytestmark = [pytest.mark.vllm, pytest.mark.slow]  # .ci/run runs them (-m vllm)


@pytest.fixture(scope="module")
def config(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """configs/paper_cpu_2rank.yaml on a freshly built head-dimension-32 tiny model."""
    pytest.importorskip("vllm")
    from flowsteer.models.tiny import build_tiny_model

    root = tmp_path_factory.mktemp("topology")
    model = build_tiny_model(root / "tiny", hidden_size=64, num_heads=2, num_kv_heads=1, seed=0)
    text = CONFIG.read_text()
    assert "runs/tiny-policy-hd32" in text
    data = yaml.safe_load(text.replace("runs/tiny-policy-hd32", str(model)))
    callbacks = data["trainer"]["callbacks"]
    sync = next(c for c in callbacks if c["class_path"] == "callbacks.WeightSyncCallback")
    sync["init_args"]["tolerance"] = PROBE_TOLERANCE
    callbacks.insert(
        callbacks.index(sync), {"class_path": "tests.lightning.lora_setter.SeededWeights"}
    )
    out = root / "paper_cpu_2rank.yaml"
    out.write_text(yaml.safe_dump(data, sort_keys=False))
    return out


def _fit(config: Path, root: Path, *extra: str) -> str:
    return run_engine_fit(config, root, *extra, timeout_s=TIMEOUT_S)


def _metric(root: Path, name: str) -> list[float]:
    values = []
    for path in sorted(root.glob("csv/version_*/metrics.csv")):
        with path.open() as f:
            values += [float(r[name]) for r in csv.DictReader(f) if r.get(name)]
    return values


def _check(root: Path, iterations: int) -> None:
    # 2 sources × 2 tasks × group 2 = 8 episodes over both ranks (4 on each).
    assert _metric(root, "rollout/episodes") == [8.0] * iterations
    probes = _metric(root, "sync/probe_logprob_diff")
    assert len(probes) == iterations and max(probes) < 0.05
    assert (root / "checkpoints" / "last.ckpt").exists()


def test_fsdp2_lora_in_process_engines_two_ranks_and_resume(config: Path, tmp_path: Path) -> None:
    root = tmp_path / "fsdp2"
    _fit(config, root, "--trainer.max_epochs=1")
    _check(root, 1)
    _fit(
        config,
        root,
        "--trainer.max_epochs=2",
        "--ckpt_path",
        str(root / "checkpoints" / "last.ckpt"),
    )
    _check(root, 2)


def test_ddp_full_in_process_engines_two_ranks_and_resume(config: Path, tmp_path: Path) -> None:
    root = tmp_path / "ddp"
    ddp = ("--trainer.strategy=ddp", "--model.policy.init_args.lora=null")
    _fit(config, root, *ddp, "--trainer.max_epochs=1")
    _check(root, 1)
    last = str(root / "checkpoints" / "last.ckpt")
    _fit(config, root, *ddp, "--trainer.max_epochs=2", "--ckpt_path", last)
    _check(root, 2)


@pytest.mark.parametrize(
    "extra",
    [("--model.policy.init_args.lora=null",), ("--trainer.strategy=ddp",)],
    ids=["fsdp2-full", "ddp-lora"],
)
def test_other_combinations_one_iteration(
    config: Path, tmp_path: Path, extra: tuple[str, ...]
) -> None:
    root = tmp_path / "run"
    _fit(config, root, *extra, "--trainer.max_epochs=1")
    _check(root, 1)
