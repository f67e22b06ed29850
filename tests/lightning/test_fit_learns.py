"""The quickstart learns: through the real trainer (CWRPOModule, RolloutCallback, the canvas,
executor and reward, constrained actions), the seeded quickstart's R_div, finish rate and total
reward rise within a short run, from the mean of the first two iterations to the mean of the
last two. Each threshold lies about halfway between what the same seeded run measured with
learning (learning rate 1e-2) and without it (learning rate 0):

| | learning rate 1e-2 | learning rate 0 | asserted |
|---|---|---|---|
| R_div | 0.48 -> 0.61 (+0.13) | 0.47 -> 0.34 (-0.13) | rises |
| finish rate | 0.31 -> 0.59 (+0.28) | 0.31 -> 0.28 (-0.03) | +0.15 |
| total | -0.73 -> -0.52 (+0.21) | -0.74 -> -0.87 (-0.13) | +0.10 |

A single 16-episode iteration moves by about ±0.2 on its own, so the rises are not read from
single iterations. The run takes about 300 CPU-seconds."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from lightning_modules.cli import main
from tests.lightning.test_fit import scalars

ROOT = Path(__file__).resolve().parents[2]
ITERATIONS = 8


def _quickstart(tmp_path: Path, policy: Path, lr: float) -> dict[str, list[float]]:
    config = yaml.safe_load((ROOT / "configs/quickstart.yaml").read_text())
    trainer = config["trainer"]
    trainer["default_root_dir"] = str(tmp_path / "run")
    trainer["max_epochs"] = ITERATIONS
    trainer["limit_val_batches"] = 0
    trainer["callbacks"] = [c for c in trainer["callbacks"] if "Checkpoint" not in c["class_path"]]
    trainer["enable_checkpointing"] = False
    rollout = trainer["callbacks"][-1]["init_args"]
    rollout["executor"]["init_args"]["backend"]["init_args"]["model_path"] = str(policy)
    rollout["progress"] = False
    config["model"]["policy"]["init_args"]["model"] = str(policy)
    config["model"]["optimizer"]["init_args"]["lr"] = lr
    for entry in config["data"]["train"]:
        entry["path"] = str(ROOT / entry["path"])
    config["data"].pop("val", None)
    path = tmp_path / "quickstart.yaml"
    path.write_text(yaml.safe_dump(config))
    assert main(["fit", "--config", str(path)]) == 0
    logged = scalars(tmp_path / "run")
    return {k: [v for _, v in sorted(logged[k])] for k in logged if k.startswith("rollout/")}


@pytest.mark.slow
@pytest.mark.timeout(1800)
def test_quickstart_r_div_and_finish_rate_rise(tmp_path: Path, tiny_policy: Path) -> None:
    curves = _quickstart(tmp_path, tiny_policy, lr=1.0e-2)
    div = curves["rollout/reward/div"]
    assert len(div) == ITERATIONS
    assert curves["rollout/invalid_action_rate"] == [0.0] * ITERATIONS
    assert _rise(div) > 0.0, div
    finish = curves["rollout/finish_rate"]
    assert _rise(finish) > 0.15, finish
    total = curves["rollout/reward/total"]
    assert _rise(total) > 0.10, total


def _rise(curve: list[float]) -> float:
    """Mean of the last two iterations minus the mean of the first two."""
    return sum(curve[-2:]) / 2 - sum(curve[:2]) / 2
