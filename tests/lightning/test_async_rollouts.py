"""Asynchronous rollouts (`RolloutSource(async_rollouts=True)`): iteration k+1's episodes are
sampled during iteration k's update, exactly one weight version stale (0 on the first
iteration), stamped with the engine's version, corrected by TIS by default, sampled from an
engine copy the update never touches, and carried through a checkpoint so a killed and resumed
run trains on exactly what the uninterrupted one did. Synchronous runs are unchanged."""

from __future__ import annotations

import itertools
import json
import signal
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from callbacks.rollout_source import RolloutSource
from flowsteer.rollout.trajectory import Trajectory
from lightning_modules.cli import main
from tests.lightning.conftest import tiny_config, write_config
from tests.lightning.test_fit import scalars
from tests.lightning.test_resume import _fit

COMPARED = ("train/loss", "train/grad_norm", "train/tis_weight_mean", "rollout/reward/total")


def _config(tmp_path: Path, name: str, policy: Path, *, async_rollouts: bool, **extra) -> dict:
    """The tiny fit (2 steps per iteration) with constrained turns scored by `DslReward`, so
    groups differ and the losses are real; recorded by `RecordingRollout`."""
    config = tiny_config(tmp_path / name, policy, epochs=3)
    rollout = config["trainer"]["callbacks"][0]
    rollout["class_path"] = "tests.lightning.recording_rollout.RecordingRollout"
    rollout["init_args"].update(
        out=str(tmp_path / f"{name}.json"),
        constrained_actions=True,
        max_think_chars=0,
        max_prompt_chars=8,
        max_new_tokens=48,
        async_rollouts=async_rollouts,
        reward={"class_path": "tests.lightning.dsl_reward.DslReward"},
        **extra,
    )
    return config


def _record(tmp_path: Path, name: str) -> dict:
    return json.loads((tmp_path / f"{name}.json").read_text())


# -- the whole loop ------------------------------------------------------------------------------


@pytest.mark.slow
def test_async_fit_is_one_version_stale_with_tis_and_a_private_engine(
    tmp_path: Path, tiny_policy: Path
) -> None:
    config = _config(tmp_path, "async", tiny_policy, async_rollouts=True)
    config["trainer"]["callbacks"].pop(2)  # no per-step checkpoint: it would wait each step
    config["trainer"]["enable_checkpointing"] = False
    assert main(["fit", "--config", str(write_config(tmp_path / "a.yaml", config))]) == 0
    record = _record(tmp_path, "async")
    its = record["iterations"]
    assert [it["staleness"] for it in its] == [0, 1, 1]
    # Iteration k > 0 trains on episodes sampled with the weights of iteration k-1's start.
    assert its[0]["versions"] == [0]
    for previous, it in itertools.pairwise(its):
        assert it["versions"] == [previous["global_step"]] != [it["global_step"]]
    assert all(it["tis_cap"] == 2.0 for it in its)  # on by default under async
    # The engine samples its own copy, which never moves while it generates.
    assert record["shares_policy_storage"] == [False]
    assert record["generations"] and not any(g["engine_changed"] for g in record["generations"])
    logged = scalars(tmp_path / "async" / "tb")
    assert [v for _, v in sorted(logged["rollout/staleness"])] == [0.0, 1.0, 1.0]
    assert "train/tis_weight_mean" in logged and "time/rollout_wait_s" in logged


@pytest.mark.slow
def test_sync_fit_is_unchanged(tmp_path: Path, tiny_policy: Path) -> None:
    config = _config(tmp_path, "sync", tiny_policy, async_rollouts=False)
    config["trainer"]["callbacks"].pop(2)
    config["trainer"]["enable_checkpointing"] = False
    assert main(["fit", "--config", str(write_config(tmp_path / "s.yaml", config))]) == 0
    record = _record(tmp_path, "sync")
    its = record["iterations"]
    assert [it["staleness"] for it in its] == [0, 0, 0]
    assert [it["versions"] for it in its] == [[it["global_step"]] for it in its]
    assert all(it["tis_cap"] is None for it in its)  # the module's setting, untouched
    assert record["shares_policy_storage"] == [True]  # the live policy, as before
    assert "rollout/staleness" not in scalars(tmp_path / "sync" / "tb")


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_async_sigkill_mid_iteration_then_resume_matches_uninterrupted(
    tmp_path: Path, tiny_policy: Path
) -> None:
    whole = _fit(
        write_config(
            tmp_path / "whole.yaml", _config(tmp_path, "whole", tiny_policy, async_rollouts=True)
        )
    )
    assert whole.returncode == 0, whole.stderr[-3000:]
    # Iteration 0 takes one step (its first minibatch has no sampled token), iteration 1 steps
    # 2 and 3: die after step 2, inside iteration 1's update, while iteration 2's rollout is
    # prefetched (the per-step checkpoint waited for it and saved it).
    kill = [{"class_path": "tests.lightning.killer.KillAtStep", "init_args": {"step": 2}}]
    killed_config = _config(tmp_path, "killed", tiny_policy, async_rollouts=True)
    killed_config["trainer"]["callbacks"] += kill
    killed = _fit(write_config(tmp_path / "killed.yaml", killed_config))
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-3000:]
    last = tmp_path / "killed" / "checkpoints" / "last.ckpt"
    state = torch.load(last, weights_only=False)
    assert state["global_step"] == 2
    pending = next(s for k, s in state["callbacks"].items() if "RecordingRollout" in k)
    assert pending["prefetch"]["iteration"] == 2 and pending["prefetch"]["trajectories"]

    resumed_config = _config(tmp_path, "killed", tiny_policy, async_rollouts=True)
    resumed = _fit(
        write_config(tmp_path / "resumed.yaml", resumed_config), "--ckpt_path", str(last)
    )
    assert resumed.returncode == 0, resumed.stderr[-3000:]

    expected, got = scalars(tmp_path / "whole" / "tb"), scalars(tmp_path / "killed" / "tb")
    for name in COMPARED:
        want, have = dict(expected[name]), dict(got[name])
        assert sorted(have) == sorted(want), name
        for step, value in want.items():
            assert have[step] == pytest.approx(value, rel=1e-5, abs=1e-7), (name, step)
    assert len({round(v, 6) for _, v in expected["train/loss"]}) > 3  # real, varied losses
    assert [v for _, v in sorted(dict(got["rollout/staleness"]).items())] == [0.0, 1.0, 1.0]
    final = {
        run: torch.load(tmp_path / run / "checkpoints" / "last.ckpt", weights_only=False)
        for run in ("whole", "killed")
    }
    assert final["whole"]["global_step"] == final["killed"]["global_step"]
    for name, value in final["whole"]["state_dict"].items():
        torch.testing.assert_close(final["killed"]["state_dict"][name], value, rtol=1e-5, atol=1e-6)


# -- the source's rules, without a fit -----------------------------------------------------------


class _Source(RolloutSource):
    def episodes_per_iteration(self, trainer) -> int:
        return 2

    def prepare(self, trainer, pl_module, iteration):
        return lambda: [_trajectory(iteration)]


def _trainer(step: int = 0, world_size: int = 1) -> SimpleNamespace:
    return SimpleNamespace(global_step=step, current_epoch=0, world_size=world_size)


def _module(tis_cap: float | None = None) -> SimpleNamespace:
    return SimpleNamespace(tis_cap=tis_cap, rollout_size=None, steps_per_iteration=lambda: 2)


def test_tis_defaults_on_under_async_and_an_explicit_setting_wins() -> None:
    module = _module()
    _Source(async_rollouts=True).setup(_trainer(), module, "fit")
    assert module.tis_cap == 2.0
    module = _module(tis_cap=5.0)  # set on the module: kept
    _Source(async_rollouts=True, async_tis_cap=3.0).setup(_trainer(), module, "fit")
    assert module.tis_cap == 5.0
    module = _module()  # turned off on the source: stays off
    _Source(async_rollouts=True, async_tis_cap=None).setup(_trainer(), module, "fit")
    assert module.tis_cap is None
    module = _module()  # synchronous: never touched
    _Source().setup(_trainer(), module, "fit")
    assert module.tis_cap is None


def test_async_refuses_what_it_cannot_do() -> None:
    class NoPrepare(RolloutSource):
        def episodes_per_iteration(self, trainer) -> int:
            return 2

    with pytest.raises(ValueError, match=r"implement RolloutSource\.prepare"):
        NoPrepare(async_rollouts=True).setup(_trainer(), _module(), "fit")
    with pytest.raises(ValueError, match="single process only; this run has 2 ranks"):
        _Source(async_rollouts=True).setup(_trainer(world_size=2), _module(), "fit")
    with pytest.raises(ValueError, match="async_tis_cap must be > 0"):
        _Source(async_rollouts=True, async_tis_cap=0.0)


def _trajectory(version: int) -> Trajectory:
    return Trajectory([1, 2], [0, 1], [0.0, -1.0], reward=0.0, weights_version=version)


def test_staleness_counts_weight_versions_and_refuses_more_than_one() -> None:
    source, module = _Source(async_rollouts=True), _module()
    source._check_staleness(_trainer(0), module, [_trajectory(0)])
    assert source.staleness == 0
    source._check_staleness(_trainer(2), module, [_trajectory(0)])
    assert source.staleness == 1
    source._check_staleness(_trainer(3), module, [_trajectory(2)])  # a skipped step: still 1
    assert source.staleness == 1
    with pytest.raises(RuntimeError, match=r"2 versions behind the trainer .* at most 1"):
        source._check_staleness(_trainer(5), module, [_trajectory(2), _trajectory(3)])
    sync = _Source()  # synchronous sources only log it
    sync._check_staleness(_trainer(0), module, [_trajectory(0)])
    sync._check_staleness(_trainer(9), module, [_trajectory(0)])
    assert sync.staleness == 1


def test_the_pending_rollout_round_trips_through_the_state_dict() -> None:
    source = _Source(async_rollouts=True)
    source._launch(_trainer(), _module(), 4)
    state = source.state_dict()  # waits for the background rollout
    assert state["prefetch"]["iteration"] == 4
    restored = _Source(async_rollouts=True)
    restored.load_state_dict(state)
    assert restored._prefetch is not None and restored._prefetch.iteration == 4
    assert restored._prefetch.trajectories == [_trajectory(4)]
    assert _Source().state_dict() == {}  # synchronous sources save nothing new
    with pytest.raises(ValueError, match="resume with async_rollouts: true"):
        _Source().load_state_dict(state)


def test_a_failed_background_rollout_fails_the_run_at_the_join() -> None:
    class Failing(_Source):
        def prepare(self, trainer, pl_module, iteration):
            def run() -> list[Trajectory]:
                raise OSError("engine gone")

            return run

    source = Failing(async_rollouts=True)
    source._launch(_trainer(), _module(), 3)
    with pytest.raises(RuntimeError, match="background rollout of iteration 3 failed: engine gone"):
        source.join_prefetch()
    assert source._prefetch is None


def test_async_refuses_a_sleep_mode_engine() -> None:
    from callbacks.rollout import RolloutCallback

    engine = SimpleNamespace(sleep_mode=True, weights_version=0)
    callback = RolloutCallback(engine=engine, async_rollouts=True)  # type: ignore[arg-type]
    policy = SimpleNamespace(tokenizer=None, model=None)
    with pytest.raises(ValueError, match="sleep_mode frees its KV cache"):
        callback.setup(_trainer(), SimpleNamespace(policy=policy), "fit")


@pytest.mark.vllm
@pytest.mark.slow
def test_async_with_an_in_process_vllm_engine(tmp_path: Path) -> None:
    """configs/paper_cpu_2rank.yaml on one rank with async rollouts: the VLLMEngine samples in the
    background thread, every push waits for it and its probe agrees with the trainer."""
    import csv
    import os

    import yaml

    from flowsteer.models.tiny import build_tiny_model
    from tests.lightning.conftest import REPO, run_fit

    pytest.importorskip("vllm")
    model = build_tiny_model(tmp_path / "tiny", hidden_size=64, num_heads=2, num_kv_heads=1, seed=0)
    text = (REPO / "configs" / "paper_cpu_2rank.yaml").read_text()
    config = yaml.safe_load(text.replace("runs/tiny-policy-hd32", str(model)))
    trainer = config["trainer"]
    trainer.update(devices=1, strategy="auto", max_epochs=3, default_root_dir=str(tmp_path))
    trainer["enable_progress_bar"] = False
    trainer["logger"] = {
        "class_path": "lightning.pytorch.loggers.CSVLogger",
        "init_args": {"save_dir": str(tmp_path), "name": "csv"},
    }
    trainer["callbacks"][0]["init_args"]["async_rollouts"] = True
    env = dict(os.environ)
    env.pop("VLLM_ENABLE_V1_MULTIPROCESSING", None)
    run_fit(write_config(tmp_path / "async.yaml", config), timeout_s=420, env=env)

    rows = []
    for path in sorted(tmp_path.glob("csv/version_*/metrics.csv")):
        with path.open() as f:
            rows += list(csv.DictReader(f))

    def metric(name: str) -> list[float]:
        return [float(r[name]) for r in rows if r.get(name)]

    assert metric("rollout/staleness") == [0.0, 1.0, 1.0]
    assert metric("rollout/episodes") == [8.0] * 3
    probes = metric("sync/probe_logprob_diff")
    assert len(probes) == 3 and max(probes) < 0.05
    assert len(metric("train/tis_weight_mean")) > 0  # TIS on by default
