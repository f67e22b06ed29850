"""Every YAML in configs/ parses through the real CLI (LightningCLI): ``sft_*.yaml`` through
`flowsteer sft`, every other one through `flowsteer fit`."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from lightning_modules.cli import main

ALL_CONFIGS = sorted((Path(__file__).resolve().parents[2] / "configs").glob("*.yaml"))
SFT_CONFIGS = [p for p in ALL_CONFIGS if p.name.startswith("sft_")]
CONFIGS = [p for p in ALL_CONFIGS if p not in SFT_CONFIGS]


def test_configs_exist() -> None:
    assert {p.name for p in CONFIGS} >= {"quickstart.yaml", "paper.yaml"}
    assert {p.name for p in SFT_CONFIGS} >= {"sft_quickstart.yaml"}


@pytest.mark.parametrize("config", SFT_CONFIGS, ids=lambda p: p.name)
def test_sft_config_parses_through_the_cli(
    config: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["sft", "--config", str(config), "--print_config"])
    assert exit_info.value.code in (0, None)
    printed = yaml.safe_load(capsys.readouterr().out)
    source = yaml.safe_load(config.read_text())
    model = source["model"]["policy"]["init_args"]["model"]
    assert printed["model"]["policy"]["init_args"]["model"] == model
    assert printed["data"]["num_episodes"] == source["data"]["num_episodes"]


@pytest.mark.parametrize("config", CONFIGS, ids=lambda p: p.name)
def test_config_parses_through_the_cli(config: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["fit", "--config", str(config), "--print_config"])
    assert exit_info.value.code in (0, None)
    printed = yaml.safe_load(capsys.readouterr().out)
    source = yaml.safe_load(config.read_text())
    # What the file sets survives parsing: the policy, the callbacks, the training sources.
    assert (
        printed["model"]["policy"]["init_args"]["model"]
        == source["model"]["policy"]["init_args"]["model"]
    )
    assert [c["class_path"] for c in printed["trainer"]["callbacks"]] == [
        c["class_path"] for c in source["trainer"]["callbacks"]
    ]
    assert [f["source"] for f in printed["data"]["train"]] == [
        f["source"] for f in source["data"]["train"]
    ]


def test_paper_recipe_values() -> None:
    paper = yaml.safe_load((CONFIGS[0].parent / "paper.yaml").read_text())
    model, policy = paper["model"], paper["model"]["policy"]["init_args"]
    assert policy["lora"] == {"r": 64, "alpha": 64, "dropout": 0.05}
    assert model["optimizer"]["init_args"] == {"lr": 1.0e-5, "weight_decay": 0.01}
    assert model["scheduler"]["init_args"]["warmup_steps"] == 10
    assert (model["clip_eps_low"], model["clip_eps_high"], model["kl_coef"]) == (0.2, 0.2, 0.005)
    rollout = paper["trainer"]["callbacks"][0]["init_args"]
    assert (rollout["max_turns"], rollout["max_context_tokens"]) == (20, 16384)
    assert paper["data"]["tasks_per_source"] == 6 and paper["trainer"]["max_epochs"] == 300
    assert "ModelParallelStrategy" in paper["trainer"]["strategy"]["class_path"]
    assert rollout["engine"]["class_path"].endswith("VLLMEngine")
    assert (
        rollout["executor"]["init_args"]["backend"]["init_args"]["api_key_env"] == "OPENAI_API_KEY"
    )
