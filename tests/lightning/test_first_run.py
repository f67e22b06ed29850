"""A first run of the shipped quickstart config, shrunk to seconds, in a real subprocess: it prints
no warning a user cannot act on, and ``--trainer.default_root_dir`` moves everything it writes."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from tests.lightning.conftest import REPO

# Lines matching /warn/i that may appear, each with the reason it is not ours to fix. Keep short.
ALLOWED: list[tuple[str, str]] = []


@pytest.fixture(scope="module")
def first_run(tmp_path_factory: pytest.TempPathFactory, tiny_policy: Path) -> dict:
    tmp = tmp_path_factory.mktemp("first_run")
    config = yaml.safe_load((REPO / "configs" / "quickstart.yaml").read_text())
    config["trainer"].update(max_epochs=1, check_val_every_n_epoch=1)
    (rollout,) = [
        c["init_args"] for c in config["trainer"]["callbacks"] if "Rollout" in c["class_path"]
    ]
    rollout.update(group_size=2, max_turns=1, max_new_tokens=8)
    rollout["executor"]["init_args"]["backend"]["init_args"]["model_path"] = str(tiny_policy)
    config["model"]["policy"]["init_args"]["model"] = str(tiny_policy)
    config["data"]["tasks_per_source"] = 1
    for held_out in config["data"]["val"]:
        held_out["limit"] = 1
    path = tmp / "quickstart.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    root = tmp / "root"
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]),
    }
    env.pop("PYTHONWARNINGS", None)
    started = time.time()
    result = subprocess.run(
        [
            *(sys.executable, "-m", "lightning_modules.cli", "fit", "--config", str(path)),
            *("--trainer.default_root_dir", str(root)),
        ],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, (result.stdout + result.stderr)[-4000:]
    return {"output": result.stdout + result.stderr, "root": root, "started": started}


def test_first_run_prints_no_warning_a_user_cannot_act_on(first_run: dict) -> None:
    lines = re.split(r"[\r\n]+", first_run["output"])
    warned = [
        line
        for line in lines
        if re.search("warn", line, re.IGNORECASE)
        and not any(re.search(pattern, line) for pattern, _ in ALLOWED)
    ]
    assert not warned, "\n".join(warned)
    # The policy trains in train mode from the start (the summary table counts modes).
    assert "Modules in eval mode: 0" in first_run["output"]


def test_default_root_dir_moves_logs_and_checkpoints(first_run: dict) -> None:
    root = first_run["root"]
    assert list(root.rglob("events.out.tfevents.*")), "no TensorBoard events under the root"
    assert (root / "checkpoints" / "last.ckpt").is_file()
    assert list(root.rglob("config.yaml")) and list(root.rglob("hparams.yaml"))
    # The config's own default_root_dir (runs/quickstart) and Lightning's cwd defaults got nothing.
    for elsewhere in ("runs/quickstart", "lightning_logs", "checkpoints"):
        written = [
            p
            for p in (REPO / elsewhere).rglob("*")
            if p.is_file() and p.stat().st_mtime >= first_run["started"]
        ]
        assert not written, written


def test_hparams_name_the_version_and_commit(first_run: dict) -> None:
    import flowsteer

    (hparams,) = first_run["root"].rglob("hparams.yaml")
    logged = yaml.safe_load(hparams.read_text())
    assert logged["flowsteer_version"] == flowsteer.__version__
    assert re.fullmatch(r"[0-9a-f]{40}(-dirty)?|unknown", logged["git_commit"])
