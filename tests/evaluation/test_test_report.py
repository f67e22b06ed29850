"""``flowsteer test --config C --report DIR``: the test still runs (TensorBoard scalars) and the
same report as ``flowsteer eval`` is written for the tested policy on the config's test sets."""

from __future__ import annotations

import json

from tests.evaluation.conftest import EXAMPLES, REPLY, SCRIPTED
from tests.lightning.conftest import tiny_config, write_config


def test_test_command_writes_the_eval_report(tiny_policy, squad_file, tmp_path, capsys):
    from lightning_modules.cli import main

    executor = {
        "class_path": "flowsteer.canvas.executor.WorkflowExecutor",
        "init_args": {"backend": {"class_path": SCRIPTED, "init_args": {
            "script": [REPLY], "when_exhausted": "repeat_last"}}, "programmer_retries": 0},
    }  # fmt: skip
    config = tiny_config(tmp_path / "run", tiny_policy, executor=executor)
    config["trainer"]["callbacks"][0]["init_args"]["check_backend"] = False
    config["data"]["test"] = [
        {"source": "gsm8k", "path": str(EXAMPLES / "gsm8k_sample.jsonl"), "limit": 1},
        {"source": "squad_v2", "path": str(squad_file), "limit": 2},
    ]
    path = write_config(tmp_path / "config.yaml", config)
    out = tmp_path / "report"
    assert main(["test", "--config", str(path), "--report", str(out)]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert list(metrics["systems"]) == ["policy", "direct", "cot", "fixed"]
    assert metrics["systems"]["policy"]["datasets"]["squad_v2"]["episodes"] == 2
    assert metrics["identity"]["config"] == str(path)
    assert metrics["notes"] == ["untrained baseline skipped: the policy is the base model itself"]
    assert list((tmp_path / "run" / "tb").rglob("events.out.tfevents.*"))  # the test itself ran
    assert (out / "report.html").is_file()


def test_report_needs_a_config(capsys):
    from lightning_modules.cli import main

    assert main(["test", "--report", "x"]) == 2
    assert "--report needs --config" in capsys.readouterr().err
