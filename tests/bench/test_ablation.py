"""bench/ablation.py: the table and aggregation code, and a tiny run of the whole script."""

from __future__ import annotations

import importlib.util
import json
import math
import sys
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]


def _load():
    spec = importlib.util.spec_from_file_location("bench_ablation", REPO / "bench" / "ablation.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


ablation = _load()


def _curves(**values: list[float]) -> dict[str, list[float]]:
    return {ablation.METRICS[name]: v for name, v in values.items()}


def _run(mode: str, seed: int, shortcut: list[float]):
    curves = _curves(
        total=[-1.0, -0.5, 0.0],
        accuracy=[0.1, 0.2, 0.3],
        div_pass=[0.0, 0.5, 1.0],
        shortcut=shortcut,
        operators=[2.0, 3.0, 4.0],
    )
    return ablation.summarize_run(mode, seed, curves, last=2)


def test_summarize_run_means_the_last_iterations_and_keeps_the_first() -> None:
    run = _run("gated", 0, [0.9, 0.6, 0.2])
    assert run.final["total"] == -0.25 and run.final["shortcut"] == pytest.approx(0.4)
    assert run.start == {
        "total": -1.0,
        "accuracy": 0.1,
        "div_pass": 0.0,
        "shortcut": 0.9,
        "operators": 2.0,
    }
    assert run.curves["operators"] == [2.0, 3.0, 4.0]
    missing = _curves(total=[0.0])
    with pytest.raises(ValueError, match="rollout/reward/answer was never logged"):
        ablation.summarize_run("gated", 0, missing, last=1)
    with pytest.raises(ValueError, match="last must be >= 1"):
        ablation.summarize_run("gated", 0, missing, last=0)


def test_aggregate_and_table_give_mean_and_sample_std_per_mode_in_paper_order() -> None:
    runs = [
        _run("answer_only", 0, [1.0, 1.0, 1.0]),
        _run("gated", 0, [1.0, 0.2, 0.2]),
        _run("gated", 1, [1.0, 0.4, 0.4]),
    ]
    table = ablation.aggregate(runs)
    assert list(table) == ["gated", "answer_only"]
    gated = table["gated"]["shortcut"]
    assert gated["mean"] == pytest.approx(0.3) and gated["n"] == 2.0
    assert gated["std"] == pytest.approx(math.sqrt(0.02))  # sample std of 0.2 and 0.4
    assert gated["start"] == 1.0
    assert table["answer_only"]["shortcut"]["std"] == 0.0  # one seed
    lines = ablation.markdown_table(table).splitlines()
    assert lines[0].startswith("| reward mode | seeds | total reward | answer accuracy |")
    assert lines[2] == (
        "| `gated` | 2 | -0.25 ± 0.00 | 0.25 ± 0.00 | 0.75 ± 0.00 | 0.30 ± 0.14 | 3.50 ± 0.00 |"
    )
    assert lines[3].startswith("| `answer_only` | 1 |")
    assert lines[4] == "| start (iteration 1, `gated`) | | -1.00 | 0.10 | 0.00 | 1.00 | 2.00 |"


def test_run_config_sets_mode_seeds_policy_and_leaves_the_base_alone(tmp_path: Path) -> None:
    base = yaml.safe_load((REPO / "configs" / "ablation.yaml").read_text())
    before = json.dumps(base)
    config = ablation.run_config(base, "answer_only", 7, "some/model", 3, tmp_path)
    assert json.dumps(base) == before
    rollout = config["trainer"]["callbacks"][0]["init_args"]
    assert rollout["reward"]["init_args"]["mode"] == "answer_only"
    assert rollout["seed"] == 7 and config["seed_everything"] == 7
    assert rollout["executor"]["init_args"]["backend"]["init_args"]["seed"] == 7
    assert config["model"]["seed"] == 7 and config["data"]["seed"] == 7
    assert config["model"]["policy"]["init_args"]["model"] == "some/model"
    assert config["trainer"]["max_epochs"] == 3
    assert config["trainer"]["default_root_dir"] == str(tmp_path)
    backend = rollout["executor"]["init_args"]["backend"]["class_path"]
    assert backend == "flowsteer.llm.simulated.SimulatedBackend"


def test_the_ablation_turn_budget_admits_every_structure() -> None:
    """The grammar leaves out actions that cannot fit a turn's token budget; at 128 tokens no
    conditional fits, and without one no episode of this setup can open the gate."""
    from flowsteer.canvas.canvas import Canvas
    from flowsteer.operators.library import OperatorLibrary
    from flowsteer.rollout.action_grammar import ActionGrammar
    from flowsteer.tasks import Task

    config = yaml.safe_load((REPO / "configs" / "ablation.yaml").read_text())
    rollout = config["trainer"]["callbacks"][0]["init_args"]
    library = OperatorLibrary.load(str(REPO / rollout["library"]))
    grammar = ActionGrammar(
        max_think_chars=rollout["max_think_chars"], max_prompt_chars=rollout["max_prompt_chars"]
    )
    canvas = Canvas(Task("g/0", "gsm8k", "math", "2+2?", "4"), library=library)
    ebnf = grammar.for_canvas(canvas, rollout["max_new_tokens"]).ebnf
    for structure in ("parallel", "loop", "conditional"):
        assert f"<structure>{structure}</structure>" in ebnf, structure
    assert "<structure>conditional</structure>" not in grammar.for_canvas(canvas, 128).ebnf


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_a_tiny_study_runs_end_to_end_and_modes_share_their_first_iteration(
    tmp_path: Path,
) -> None:
    """A 5-step warm start, then one iteration per mode: the first iteration's rollouts come
    before any update, so a shared seeded setup gives every mode the same workflows."""
    if not (REPO / "runs" / "tiny-policy" / "config.json").is_file():
        pytest.skip("needs the tiny policy: flowsteer tiny-model runs/tiny-policy")
    out, picture = tmp_path / "study", tmp_path / "ablation.png"
    code = ablation.main(
        [
            "--sft-steps",
            "5",
            "--seeds",
            "0",
            "--iterations",
            "1",
            "--last",
            "1",
            "--out",
            str(out),
            "--plot",
            str(picture),
        ]
    )
    assert code == 0 and picture.stat().st_size > 10_000
    result = json.loads((out / "ablation.json").read_text())
    assert list(result["table"]) == ["gated", "ungated", "answer_only"]
    first = {m: r["start"] for r in result["runs"] for m in [r["mode"]]}
    for name in ("accuracy", "div_pass", "shortcut", "operators"):
        assert len({first[m][name] for m in first}) == 1, name
    # The modes score the same episodes their own way: answer_only's total is the accuracy.
    assert first["answer_only"]["total"] == first["answer_only"]["accuracy"]
    assert "| `gated` | 1 |" in (out / "ablation.md").read_text()
