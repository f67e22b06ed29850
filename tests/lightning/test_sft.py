"""`flowsteer sft`: the warm start runs from a config through the real CLI, its loss falls, it
writes a checkpoint and a model directory `flowsteer fit` can start from, bad input fails with
one line, and the warm-started tiny policy writes valid actions without any constraint."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
import torch
import yaml

from flowsteer.canvas import FinishConstraints
from flowsteer.operators.library import OperatorLibrary
from flowsteer.rewards.workflow_reward import WorkflowReward
from flowsteer.rl.policy import Policy
from flowsteer.rl.sft import sft_loss
from flowsteer.rollout import HFEngine, RolloutRunner, SamplingParams, collate
from flowsteer.rollout.chat import ChatFormat
from flowsteer.rollout.expert import ExpertPlanner, expert_trajectories
from flowsteer.tasks import Task
from lightning_modules.cli import main
from tests.lightning.conftest import write_config

REPO = Path(__file__).resolve().parents[2]
TASK = Task("toy/0", "toy", "math", "What is 2 + 2?", "4")


def sft_config(run_dir: Path, policy: Path, **data) -> dict:
    """A seconds-long warm start: a few short chain episodes, two steps."""
    return {
        "seed_everything": 0,
        "trainer": {
            "accelerator": "cpu",
            "devices": 1,
            "max_steps": 2,
            "max_epochs": -1,
            "log_every_n_steps": 1,
            "enable_progress_bar": False,
            "enable_model_summary": False,
            "default_root_dir": str(run_dir),
            "logger": {
                "class_path": "lightning.pytorch.loggers.CSVLogger",
                "init_args": {"save_dir": str(run_dir), "name": "csv"},
            },
            "callbacks": [
                {
                    "class_path": "lightning.pytorch.callbacks.ModelCheckpoint",
                    "init_args": {"dirpath": str(run_dir / "checkpoints"), "save_last": True},
                }
            ],
        },
        "model": {
            "policy": {
                "class_path": "flowsteer.rl.policy.Policy",
                "init_args": {"model": str(policy)},
            },
            "optimizer": {"class_path": "torch.optim.AdamW", "init_args": {"lr": 1e-3}},
        },
        "data": {
            "num_episodes": 2,
            "shapes": ["chain"],
            "max_turns": 3,
            "think_rate": 0.0,
            "batch_size": 1,
            **data,
        },
    }


def _run(tmp_path: Path, config: dict, capsys) -> tuple[int, str]:
    path = write_config(tmp_path / "sft.yaml", config)
    try:
        code = main(["sft", "--config", str(path)])
    except SystemExit as exit_:  # jsonargparse reports parse errors by exiting
        code = exit_.code
    return code, capsys.readouterr().err


def test_sft_runs_from_a_config_and_writes_a_model_fit_can_start_from(
    tmp_path: Path, tiny_policy: Path, capsys
) -> None:
    run = tmp_path / "run"
    code, err = _run(tmp_path, sft_config(run, tiny_policy), capsys)
    assert code == 0, err
    assert (run / "checkpoints" / "last.ckpt").is_file()
    model_dir = run / "model"
    assert (model_dir / "config.json").is_file() and (model_dir / "tokenizer.json").is_file()
    warm = Policy(str(model_dir))
    cold = Policy(str(tiny_policy))
    changed = any(
        not torch.equal(a, b)
        for a, b in zip(warm.model.parameters(), cold.model.parameters(), strict=True)
    )
    assert changed, "the exported model is the untrained one"
    # `flowsteer fit` accepts it as its starting policy.
    fit = yaml.safe_load((REPO / "configs" / "quickstart.yaml").read_text())
    fit["model"]["policy"]["init_args"]["model"] = str(model_dir)
    path = write_config(tmp_path / "fit.yaml", fit)
    with pytest.raises(SystemExit) as exit_info:
        main(["fit", "--config", str(path), "--print_config"])
    assert exit_info.value.code in (0, None)
    assert str(model_dir) in capsys.readouterr().out


def test_lora_sft_exports_merged_weights(tmp_path: Path, tiny_policy: Path, capsys) -> None:
    config = sft_config(tmp_path / "run", tiny_policy)
    config["model"]["policy"]["init_args"]["lora"] = {"r": 4, "alpha": 8, "dropout": 0.0}
    config["model"]["export_dir"] = str(tmp_path / "merged")
    code, err = _run(tmp_path, config, capsys)
    assert code == 0, err
    assert (tmp_path / "merged" / "config.json").is_file()
    assert not (tmp_path / "merged" / "adapter_config.json").exists()  # merged, plain model
    Policy(str(tmp_path / "merged"))


@pytest.mark.parametrize(
    ("data", "named"),
    [
        ({"num_episodes": 0}, "num_episodes must be >= 1, got 0"),
        ({"max_turns": 2}, "max_turns=2 is too few"),
        ({"finish_constraints": {"require_checker": True}, "library": "LIBRARY"}, "verification"),
    ],
    ids=["no-episodes", "too-few-turns", "library-without-checker"],
)
def test_bad_expert_sets_fail_at_start_with_one_line(
    tmp_path: Path, tiny_policy: Path, capsys, data: dict, named: str
) -> None:
    if data.get("library") == "LIBRARY":
        library = OperatorLibrary.default().restrict(["Plan", "Programmer", "Format"])
        data["library"] = str(tmp_path / "lib.yaml")
        Path(data["library"]).write_text(yaml.safe_dump(library.to_dict()))
    run = tmp_path / "run"
    code, err = _run(tmp_path, sft_config(run, tiny_policy, **data), capsys)
    assert code == 2
    lines = [line for line in err.splitlines() if line.startswith("flowsteer sft: error:")]
    assert len(lines) == 1 and named in lines[0], err
    assert not (run / "checkpoints").exists(), "training started"


def test_the_loss_falls_on_expert_episodes(tiny_policy: Path) -> None:
    """A few optimizer steps on the real tiny model lower the NLL of the expert's tokens."""
    torch.manual_seed(0)
    policy = Policy(str(tiny_policy))
    planner = ExpertPlanner(
        OperatorLibrary.default(), FinishConstraints(), max_turns=3, shapes=["chain"], seed=0
    )
    chat = ChatFormat(policy.tokenizer)
    trajectories = asyncio.run(expert_trajectories([TASK], chat, planner, 2))
    batch = collate(trajectories, torch.zeros(2), 0)
    optimizer = torch.optim.AdamW(policy.trainable_parameters(), lr=2e-2)
    losses = []
    for _ in range(6):
        logprobs = policy.token_logprobs(batch.input_ids, batch.attention_mask).logprobs
        loss = sft_loss(logprobs, batch.loss_mask).loss
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < 0.7 * losses[0], losses


def _valid_action_rate(model: Path, episodes: int, temperature: float) -> tuple[float, int]:
    """Sample episodes WITHOUT decoding constraints through the real canvas: (rate, turns)."""
    from flowsteer.canvas.executor import WorkflowExecutor
    from flowsteer.llm.scripted import ScriptedBackend
    from flowsteer.quickstart import EXAMPLES
    from flowsteer.tasks import load_tasks

    policy = Policy(str(model))
    policy.eval()
    tasks = load_tasks("gsm8k", EXAMPLES / "data" / "gsm8k_sample.jsonl") + load_tasks(
        "humaneval", EXAMPLES / "data" / "humaneval_sample.jsonl"
    )
    runner = RolloutRunner(
        HFEngine(policy.model, policy.tokenizer),
        policy.tokenizer,
        WorkflowExecutor(ScriptedBackend(["The answer is 42."], when_exhausted="cycle")),
        WorkflowReward(),
        max_turns=6,
        sampling=SamplingParams(max_tokens=48, temperature=temperature),
    )
    out = asyncio.run(runner.run([tasks[i % len(tasks)] for i in range(episodes)], 1, seed=0))
    turns = sum(t.turns for t in out)
    return 1.0 - sum(t.invalid_actions for t in out) / turns, turns


@pytest.mark.slow
def test_the_quickstart_warm_start_writes_valid_actions(
    tmp_path: Path, tiny_policy: Path, capsys
) -> None:
    """`configs/sft_quickstart.yaml` as shipped (paths moved to tmp): the untrained policy writes
    no valid action; the warm-started one writes valid actions on most greedy turns."""
    config = yaml.safe_load((REPO / "configs" / "sft_quickstart.yaml").read_text())
    run = tmp_path / "run"
    config["trainer"]["default_root_dir"] = str(run)
    config["trainer"]["enable_progress_bar"] = False
    config["trainer"]["logger"] = False
    config["trainer"]["callbacks"][0]["init_args"]["dirpath"] = str(run / "checkpoints")
    config["model"]["policy"]["init_args"]["model"] = str(tiny_policy)
    config["model"]["export_dir"] = str(run / "model")
    code, err = _run(tmp_path, config, capsys)
    assert code == 0, err
    before, _ = _valid_action_rate(tiny_policy, 8, 0.0)
    after, turns = _valid_action_rate(run / "model", 8, 0.0)
    print(
        f"greedy valid-action rate: untrained {before:.3f}, warm-started {after:.3f} ({turns} turns)"
    )
    assert before < 0.1
    assert after >= 0.5
