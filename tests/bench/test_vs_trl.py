"""The vs_trl harness: the shared workload is deterministic, the ratios are paired, and both
trainers run a short real workload (TRL only where its bench venv exists)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "bench"))

import grpo_workload as wl  # noqa: E402
import vs_trl  # noqa: E402

TRL_PYTHON = vs_trl.DEFAULT_TRL_PYTHON


def test_prompts_and_step_order_are_deterministic() -> None:
    work = wl.Workload()
    assert wl.prompts(64) == wl.prompts(64)
    assert len(set(wl.prompts(64))) == 64
    steps = [wl.step_prompts(work, s) for s in range(16)]
    assert steps == [wl.step_prompts(work, s) for s in range(16)]
    # 16 steps of 4 prompts walk one permutation: every prompt exactly once
    assert sorted(i for chunk in steps for i in chunk) == list(range(64))
    assert wl.step_prompts(wl.Workload(seed=1), 0) != steps[0]


def test_reward_is_the_target_substring() -> None:
    assert wl.reward(["axe", "bee", ""], "x") == [1.0, 0.0, 0.0]


def test_paired_ratios_pair_runs_in_order() -> None:
    ratios = wl.paired_ratios([1.0, 3.0, 2.0], [2.0, 2.0, 1.0])
    assert ratios == {"median": 1.5, "min": 0.5, "max": 2.0, "n": 3}
    with pytest.raises(ValueError, match="paired"):
        wl.paired_ratios([1.0], [1.0, 2.0])
    with pytest.raises(ValueError, match="not positive"):
        wl.paired_ratios([1.0], [0.0])


def test_ratio_table_and_summary() -> None:
    r = wl.paired_ratios([0.9], [1.0])
    table = wl.ratio_table([{"model": "tiny", "threads": 1, "step": r, "fwdbwd": r, "gen": r}])
    assert (
        table.splitlines()[2]
        == "| tiny | 1 | 1 | 0.90x (0.90-0.90) | 0.90x (0.90-0.90) | 0.90x (0.90-0.90) |"
    )
    run = {
        "steps": [
            {"step": 9.0, "fwdbwd": 9.0, "gen": 9.0},
            {"step": 1.0, "fwdbwd": 0.5},
            {"step": 3.0},
        ]
    }
    assert vs_trl.summarise(run) == {
        "step": 2.0,
        "fwdbwd": 0.25,
        "gen": 0.0,
    }  # warm-up step left out


def test_load_line_gives_the_load_the_runs_saw() -> None:
    line = vs_trl.load_line([{"load": [1.0, 3.0]}, {"load": [2.0, 8.0]}])
    assert line.startswith("load average (1 min) around the runs: median 2.5 (min 1.0, max 8.0)")
    assert vs_trl.load_line([{"steps": []}]) == ""


def test_conditions_refuse_a_run_that_changes_the_work() -> None:
    vs_trl.check_conditions({"conditions": dict(vs_trl.CONDITIONS)}, "trl")
    trl_defaults = {"weights": "float32", "autocast": "bf16", "gradient_checkpointing": True}
    with pytest.raises(ValueError) as err:
        vs_trl.check_conditions({"conditions": trl_defaults}, "trl")
    message = str(err.value)
    assert "trl run is not comparable" in message
    assert "autocast='bf16' (want 'no')" in message
    assert "gradient_checkpointing=True (want False)" in message
    assert "weights" not in message
    with pytest.raises(ValueError, match="flowsteer run reports no 'conditions'"):
        vs_trl.check_conditions({"steps": []}, "flowsteer")


def test_both_processes_get_the_same_allocator(monkeypatch: pytest.MonkeyPatch) -> None:
    from flowsteer.rl.host_memory import MMAP_THRESHOLD, TRIM_THRESHOLD

    for name in ("MALLOC_TRIM_THRESHOLD_", "MALLOC_MMAP_THRESHOLD_", "OMP_WAIT_POLICY"):
        monkeypatch.delenv(name, raising=False)
    env = vs_trl.run_env(2)
    assert env["OMP_NUM_THREADS"] == "2" and env["OMP_WAIT_POLICY"] == "PASSIVE"
    assert env["MALLOC_TRIM_THRESHOLD_"] == str(TRIM_THRESHOLD)
    assert env["MALLOC_MMAP_THRESHOLD_"] == str(MMAP_THRESHOLD)
    default = vs_trl.run_env(1, same_allocator=False)
    assert "MALLOC_TRIM_THRESHOLD_" not in default and "MALLOC_MMAP_THRESHOLD_" not in default
    monkeypatch.setenv("OMP_WAIT_POLICY", "ACTIVE")  # a caller's choice is kept
    assert vs_trl.run_env(1)["OMP_WAIT_POLICY"] == "ACTIVE"


def test_missing_trl_venv_is_named(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        vs_trl.main(["--trl-python", str(tmp_path / "nope")])
    assert "setup_trl_bench.sh" in capsys.readouterr().err


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return wl.build_model("tiny", tmp_path_factory.mktemp("bench"))


@pytest.mark.slow
def test_flowsteer_side_trains_fixed_length(tiny: Path) -> None:
    import grpo_flowsteer

    out = grpo_flowsteer.run(
        str(tiny),
        1,
        2,
        True,
        False,
        wl.Workload(group_size=2, prompts_per_step=2, max_new_tokens=8),
    )
    assert len(out["steps"]) == 2 and len(out["rewards"]) == 2
    assert all(s["step"] > 0 and s["fwdbwd"] > 0 and s["gen"] > 0 for s in out["steps"])
    assert out["conditions"] == vs_trl.CONDITIONS


@pytest.mark.slow
@pytest.mark.skipif(
    not TRL_PYTHON.exists(),
    reason=f"no TRL bench venv at {TRL_PYTHON} (scripts/setup_trl_bench.sh)",
)
def test_trl_side_runs_in_its_venv(tiny: Path) -> None:
    env = vs_trl.run_env(1)
    result = vs_trl.run_one(str(TRL_PYTHON), "grpo_trl.py", tiny, 1, 2, ["--fixed-length"], env)
    assert result["trainer"] == "trl" and len(result["steps"]) == 2
    assert all(s["step"] > 0 for s in result["steps"])
    # TRL's own defaults (bf16 autocast, gradient checkpointing) are off: fp32, like FlowSteer.
    assert result["conditions"] == vs_trl.CONDITIONS


def test_setup_script_parses() -> None:
    subprocess.run(["bash", "-n", str(ROOT / "scripts" / "setup_trl_bench.sh")], check=True)
