"""`flowsteer eval --ckpt_path`: the fit run's config.yaml is found, the checkpoint's policy
weights are what the evaluation plays, and the config's executor is the backend."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from flowsteer.evaluation.fit_config import FitConfig, find_config
from tests.evaluation.conftest import EXAMPLES, REPLY, SCRIPTED


@pytest.fixture(scope="module")
def fit_run(tiny_policy: Path, tmp_path_factory) -> tuple[Path, str, float]:
    """A fit run's layout: <run>/checkpoints/last.ckpt and <run>/tb/version_0/config.yaml, the
    checkpoint in Lightning's format with one policy weight changed."""
    import torch

    from flowsteer.rl.policy import Policy

    run = tmp_path_factory.mktemp("fit")
    state = Policy(str(tiny_policy)).state_dict()
    name = next(k for k in state if k.endswith("q_proj.weight"))
    state[name] = torch.full_like(state[name], 0.125)
    (run / "checkpoints").mkdir()
    torch.save({"state_dict": {f"policy.{k}": v for k, v in state.items()}, "epoch": 1},
               run / "checkpoints" / "last.ckpt")  # fmt: skip
    executor = {
        "class_path": "flowsteer.canvas.executor.WorkflowExecutor",
        "init_args": {"backend": {"class_path": SCRIPTED, "init_args": {
            "script": [REPLY], "when_exhausted": "repeat_last"}}, "programmer_retries": 0},
    }  # fmt: skip
    config = {
        "trainer": {"callbacks": [{"class_path": "callbacks.RolloutCallback", "init_args": {
            "max_turns": 2, "max_new_tokens": 8, "executor": executor}}]},
        "model": {"policy": {"class_path": "flowsteer.rl.policy.Policy",
                             "init_args": {"model": str(tiny_policy), "dtype": "float32"}}},
    }  # fmt: skip
    (run / "tb" / "version_0").mkdir(parents=True)
    (run / "tb" / "version_0" / "config.yaml").write_text(yaml.safe_dump(config))
    return run / "checkpoints" / "last.ckpt", name, 0.125


def test_config_is_found_and_checkpoint_weights_are_loaded(fit_run):
    from flowsteer.evaluation.policy_eval import load_policy_model

    ckpt, name, value = fit_run
    config = FitConfig.read(find_config(ckpt))
    assert config.path.parent.name == "version_0"
    assert config.rollout["max_turns"] == 2 and config.executor["init_args"]["backend"]
    model, _, _ = load_policy_model(config.model, checkpoint=str(ckpt))
    weight = dict(model.named_parameters())[name.removeprefix("model.")]
    assert bool((weight == value).all())


def test_eval_from_a_checkpoint_uses_its_config(fit_run, tmp_path, capsys):
    from lightning_modules.cli import main

    ckpt, _, _ = fit_run
    out = tmp_path / "report"
    args = ["eval", "--ckpt_path", str(ckpt), "--data", f"gsm8k={EXAMPLES / 'gsm8k_sample.jsonl'}",
            "--limit", "1", "--baselines", "untrained,direct", "--out", str(out)]  # fmt: skip
    assert main(args) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    identity = metrics["identity"]
    assert identity["checkpoint"] == str(ckpt) and identity["config"].endswith("config.yaml")
    assert identity["sampling"]["max_turns"] == 2 and identity["backend"]["class_path"] == SCRIPTED
    assert list(metrics["systems"]) == ["policy", "untrained", "direct"]

    # Training on overwrites last.ckpt: the same path is now another policy, refused.
    import torch

    state = torch.load(ckpt, weights_only=False)
    state["epoch"] = 2
    torch.save(state, ckpt)
    assert main(args) == 2
    assert "weights_sha256.checkpoint" in capsys.readouterr().err


def test_checkpoint_without_a_config_is_a_clear_error(tmp_path, capsys):
    from lightning_modules.cli import main

    ckpt = tmp_path / "alone.ckpt"
    ckpt.write_bytes(b"x")
    assert (
        main(["eval", "--ckpt_path", str(ckpt), "--data", "gsm8k=x", "--out", str(tmp_path / "o")])
        == 2
    )
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--config" in err[0]
