"""``--engine CLASS_PATH``: another engine (here the test suite's `ScriptedEngine`, which replays
the reference episode) plays the policy's turns; its finished workflows fill the report."""

from __future__ import annotations

import json

from flowsteer.quickstart import REFERENCE_EPISODE
from tests.evaluation.conftest import EXAMPLES, SCRIPTED, backend_args


def test_class_path_engine_plays_the_policy(tiny_policy, tmp_path):
    from lightning_modules.cli import main

    out = tmp_path / "report"
    args = [
        "eval", "--model", str(tiny_policy), "--data", f"gsm8k={EXAMPLES / 'gsm8k_sample.jsonl'}",
        "--limit", "1", "--baselines", "none", "--max-turns", "20", "--max-new-tokens", "256",
        "--engine", "tests.lightning.scripted_engine.ScriptedEngine",
        "--engine-args", json.dumps({"actions_file": str(REFERENCE_EPISODE)}),
        "--backend", SCRIPTED, "--backend-args", backend_args(),
        "--executor-args", json.dumps({"programmer_retries": 0}), "--out", str(out),
    ]  # fmt: skip
    assert main(args) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    gsm8k = metrics["systems"]["policy"]["datasets"]["gsm8k"]
    assert gsm8k["finish_rate"] == 1.0 and gsm8k["shortcut_rate"] == 0.0
    assert gsm8k["backend_calls"] > 0 and gsm8k["reward_components"]["div"] == 1.0
    shape = gsm8k["shapes"][0]
    assert shape["count"] == 1 and (out / shape["picture"]).read_text().startswith("<svg")
    episode = json.loads((out / "episodes.jsonl").read_text().splitlines()[0])
    assert episode["dsl"] == shape["dsl"] and episode["workflow_json"].startswith("{")
    assert episode["answer"] is not None and len(episode["actions"]) == episode["turns"]
    assert metrics["identity"]["engine"] == "tests.lightning.scripted_engine.ScriptedEngine"
