"""Every YAML in configs/ parses through the real CLI (LightningCLI): ``sft_*.yaml`` and ``*_sft.yaml`` through
`flowsteer sft`, every other one through `flowsteer fit`."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from lightning_modules.cli import main

ALL_CONFIGS = sorted((Path(__file__).resolve().parents[2] / "configs").glob("*.yaml"))
SFT_CONFIGS = [p for p in ALL_CONFIGS if p.name.startswith("sft_") or p.stem.endswith("_sft")]
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
    train = source.get("data", {}).get("train") or []  # a source of its own may need no tasks
    assert [f["source"] for f in printed["data"]["train"] or []] == [f["source"] for f in train]


def test_paper_recipe_values() -> None:
    paper = yaml.safe_load((CONFIGS[0].parent / "paper.yaml").read_text())
    model, policy = paper["model"], paper["model"]["policy"]["init_args"]
    assert policy["lora"] == {"r": 64, "alpha": 64, "dropout": 0.05}
    assert policy["disable_dropout"] is True  # so the LoRA dropout is off during RL
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


def _questions(files: list[dict]) -> set[str]:
    """Questions of the files a shipped config names (those present here). Ids are not compared:
    GSM8K's are positions in their file, so two disjoint files share them."""
    from flowsteer.tasks import read_tasks

    root = CONFIGS[0].parent.parent
    found: set[str] = set()
    for file in files:
        if not (root / file["path"]).exists():
            continue  # the paper's datasets live outside the repository
        tasks = read_tasks(file["source"], str(root / file["path"]), file.get("split")).tasks
        found |= {t.question for t in tasks}
    return found


@pytest.mark.parametrize("config", CONFIGS, ids=lambda p: p.name)
def test_validation_tasks_are_held_out_from_training(config: Path) -> None:
    data = yaml.safe_load(config.read_text()).get("data")
    if data is None:
        assert "SingleTurnSource" in config.read_text()  # the one config with no tasks
        return
    held_out = data.get("val", []) + data.get("test", [])
    train_paths = {(f["path"], f.get("split")) for f in data["train"]}
    assert not [f for f in held_out if (f["path"], f.get("split")) in train_paths]
    assert not _questions(data["train"]) & _questions(held_out)


def test_held_out_samples_are_installed_with_the_package() -> None:
    import configparser
    import fnmatch

    setup = configparser.ConfigParser()
    setup.read(CONFIGS[0].parent.parent / "setup.cfg")
    globs = [g.strip() for g in setup["options.package_data"]["flowsteer"].split(",")]
    for name in ("gsm8k_val.jsonl", "humaneval_val.jsonl"):
        assert any(fnmatch.fnmatch(f"examples/data/{name}", g) for g in globs), name


def _leaves(node: object, path: str = "") -> dict[str, object]:
    """Every scalar of a YAML tree by its dotted path (list items by index, or by source name)."""
    if isinstance(node, dict):
        out: dict[str, object] = {}
        for key, value in node.items():
            out.update(_leaves(value, f"{path}.{key}" if path else str(key)))
        return out
    if isinstance(node, list):
        out = {}
        for i, value in enumerate(node):
            out.update(_leaves(value, f"{path}[{i}]"))
        return out
    return {path: node}


# What the tested 2-rank CPU config may change in paper.yaml: sizes, the device, and the models.
CPU_2RANK_CHANGES = re.compile(
    r"^(trainer\.(accelerator|devices|precision|max_epochs|check_val_every_n_epoch"
    r"|default_root_dir|strategy\.init_args\.data_parallel_size)"
    r"|trainer\.callbacks\[0\]\.init_args\.(group_size|max_turns|max_context_tokens"
    r"|max_new_tokens|engine\.init_args\..*|executor\.init_args\.(node_timeout_s|backend\..*))"
    r"|trainer\.callbacks\[2\]\.init_args\.(every_n_steps|keep_every_n_steps)"
    r"|model\.policy\.init_args\.(model|dtype)|model\.scheduler\.init_args\.total_steps"
    r"|model\.minibatch_size|data\.(train|val)\[\d+\]\..*|data\.tasks_per_source)$"
)


def test_paper_cpu_2rank_differs_from_paper_only_in_sizes_device_and_model() -> None:
    root = CONFIGS[0].parent
    paper = _leaves(yaml.safe_load((root / "paper.yaml").read_text()))
    cpu = _leaves(yaml.safe_load((root / "paper_cpu_2rank.yaml").read_text()))
    changed = {key for key in paper.keys() | cpu.keys() if paper.get(key) != cpu.get(key)}
    assert changed, "paper_cpu_2rank.yaml should at least change the device"
    assert sorted(k for k in changed if not CPU_2RANK_CHANGES.match(k)) == []
    assert paper["trainer.strategy.class_path"] == cpu["trainer.strategy.class_path"]
    engine = "trainer.callbacks[0].init_args.engine.init_args."
    assert paper[engine + "sleep_mode"] is True and cpu[engine + "sleep_mode"] is False
    assert cpu[engine + "max_num_batched_tokens"] >= cpu[engine + "max_model_len"]


def test_quickstart_constraints_switch_off_with_one_flag(
    capsys: pytest.CaptureFixture[str],
) -> None:
    config = CONFIGS[0].parent / "quickstart.yaml"
    flag = "--trainer.callbacks.init_args.constrained_actions=false"
    with pytest.raises(SystemExit):
        main(["fit", "--config", str(config), flag, "--print_config"])
    printed = yaml.safe_load(capsys.readouterr().out)
    (rollout,) = [c for c in printed["trainer"]["callbacks"] if "Rollout" in c["class_path"]]
    assert rollout["init_args"]["constrained_actions"] is False
    assert yaml.safe_load(config.read_text())["trainer"]["callbacks"][-1]["init_args"][
        "constrained_actions"
    ]
