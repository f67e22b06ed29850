"""The rollout-source seam: `RolloutSource` fills the buffer for any subclass, a missing source
or method is named in the error, and the single-turn example trains through `flowsteer fit`."""

from __future__ import annotations

import json
from pathlib import Path

import lightning as L
import pytest
import torch
import yaml

from callbacks.rollout_source import RolloutSource
from callbacks.single_turn import SingleTurnSource
from flowsteer.rl.policy import Policy
from flowsteer.rollout.trajectory import Trajectory
from lightning_modules.cli import main
from lightning_modules.cwrpo_module import CWRPOModule
from tests.lightning.test_fit import scalars

ROOT = Path(__file__).resolve().parents[2]


def _trainer(callbacks, epochs: int = 1) -> L.Trainer:
    return L.Trainer(
        accelerator="cpu",
        devices=1,
        max_epochs=epochs,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        limit_val_batches=0,
        callbacks=callbacks,
    )


class Counting(RolloutSource):
    """Four seeded two-token episodes in two groups, rewards 0/1 in each group."""

    def __init__(self, extra: int = 0) -> None:
        super().__init__()
        self.extra = extra
        self.filled: list[int] = []

    def episodes_per_iteration(self, trainer: L.Trainer) -> int:
        return 4

    def play(self, trainer, pl_module) -> list[Trajectory]:
        return [
            Trajectory([5, 6, 7 + i], [0, 1, 1], [0.0, -1.0, -1.0], float(i % 2), group_id=i // 2)
            for i in range(4 + self.extra)
        ]

    def on_rollout(self, trainer, pl_module, trajectories, advantages, seconds) -> None:
        self.filled.append(len(trajectories))
        assert torch.allclose(advantages.values, torch.tensor([-1.0, 1.0, -1.0, 1.0]), atol=1e-5)


def test_a_subclass_fills_the_buffer_every_iteration(tiny_policy: Path) -> None:
    source = Counting()
    module = CWRPOModule(Policy(str(tiny_policy)), minibatch_size=4)
    _trainer([source], epochs=2).fit(module)
    assert source.filled == [4, 4] and module.rollout_size == 4
    assert module.global_step == 2


def test_a_source_missing_a_method_is_named(tiny_policy: Path) -> None:
    class NoPlay(RolloutSource):
        def episodes_per_iteration(self, trainer):
            return 2

    with pytest.raises(NotImplementedError, match=r"NoPlay must implement RolloutSource\.play"):
        _trainer([NoPlay()]).fit(CWRPOModule(Policy(str(tiny_policy))))
    with pytest.raises(RuntimeError, match=r"play returned 6 episodes.*at most 4"):
        _trainer([Counting(extra=2)]).fit(CWRPOModule(Policy(str(tiny_policy)), minibatch_size=4))


def test_no_source_says_what_to_add(tiny_policy: Path) -> None:
    class Mine(L.Callback):  # a user's own callback, not a RolloutSource
        pass

    with pytest.raises(ValueError, match=r"no rollout source.*callbacks\.RolloutSource"):
        _trainer([Mine()]).fit(CWRPOModule(Policy(str(tiny_policy))))


def test_single_turn_source_refuses_bad_settings(tmp_path: Path) -> None:
    prompts = tmp_path / "p.jsonl"
    prompts.write_text(json.dumps({"prompt": "hi", "target": "a"}) + "\n")
    reward = "flowsteer.rewards.text_reward:target_fraction"
    with pytest.raises(ValueError, match="no such file"):
        SingleTurnSource(str(tmp_path / "missing.jsonl"), reward)
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"prompt": "ok"}\n{"text": "no prompt"}\n')
    with pytest.raises(ValueError, match=r"bad\.jsonl:2: needs a 'prompt' string"):
        SingleTurnSource(str(bad), reward)
    with pytest.raises(ValueError, match=r"package\.module:function"):
        SingleTurnSource(str(prompts), "no_colon")
    with pytest.raises(ValueError, match="cannot be imported"):
        SingleTurnSource(str(prompts), "flowsteer.rewards.text_reward:nothing")
    with pytest.raises(ValueError, match="group_size must be at least 2"):
        SingleTurnSource(str(prompts), reward, group_size=1)


def test_single_turn_example_trains_through_flowsteer_fit(
    tmp_path: Path, tiny_policy: Path
) -> None:
    config = yaml.safe_load((ROOT / "configs/single_turn_example.yaml").read_text())
    config["trainer"]["default_root_dir"] = str(tmp_path / "run")
    config["trainer"]["max_epochs"] = 2
    source = config["trainer"]["callbacks"][0]["init_args"]
    source["prompts"] = str(ROOT / source["prompts"])
    source["max_new_tokens"] = 8
    config["model"]["policy"]["init_args"]["model"] = str(tiny_policy)
    path = tmp_path / "single_turn.yaml"
    path.write_text(yaml.safe_dump(config))
    assert main(["fit", "--config", str(path)]) == 0
    logged = scalars(tmp_path / "run")
    assert len(logged["rollout/reward/total"]) == 2
    assert len(logged["train/loss"]) == 2  # one on-policy step per iteration
    assert all(0.0 <= value <= 1.0 for _, value in logged["rollout/reward/total"])
