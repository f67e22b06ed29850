"""`flowsteer run-workflow`: a saved workflow on one question or on scored tasks, and the fixed
baseline of `flowsteer eval` giving the same answers as the same workflow run here."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from flowsteer.evaluation.baselines import fixed_workflow
from tests.evaluation.conftest import EXAMPLES, SCRIPTED, backend_args

EXECUTOR_ARGS = json.dumps({"sandbox_timeout_s": 5.0, "programmer_retries": 0})


def _backend() -> list[str]:
    return [
        "--backend",
        SCRIPTED,
        "--backend-args",
        backend_args(),
        "--executor-args",
        EXECUTOR_ARGS,
    ]


@pytest.mark.parametrize(
    ("kind", "source", "path"),
    [
        ("math", "gsm8k", EXAMPLES / "gsm8k_sample.jsonl"),
        ("code", "humaneval", EXAMPLES / "humaneval_sample.jsonl"),
        ("qa", "squad_v2", None),
    ],
)
def test_fixed_baseline_equals_run_workflow(report_run, squad_file, tmp_path, kind, source, path):
    from lightning_modules.cli import main

    workflow = tmp_path / f"{kind}.json"
    workflow.write_text(fixed_workflow(kind).to_json(indent=2))
    out = tmp_path / "report"
    data = f"{source}={path or squad_file}"
    assert main(["run-workflow", str(workflow), "--tasks", data, "--limit", "2", *_backend(),
                 "--out", str(out)]) == 0  # fmt: skip

    def answers(folder: Path, system: str) -> dict:
        rows = [json.loads(line) for line in (folder / "episodes.jsonl").read_text().splitlines()]
        return {
            r["task_id"]: (r["answer"], r["scores"], r["dsl"])
            for r in rows
            if r["system"] == system and r["source"] == source
        }

    mine, fixed = answers(out, "workflow"), answers(report_run, "fixed")
    assert len(mine) == 2 and mine == fixed
    metrics = json.loads((out / "metrics.json").read_text())
    assert list(metrics["systems"]) == ["workflow"]
    assert (out / "report.html").is_file() and (out / "plots" / "accuracy.png").is_file()


def test_question_prints_answer_and_dsl_and_saves_a_picture(tmp_path, capsys):
    from lightning_modules.cli import main

    workflow = tmp_path / "math.json"
    workflow.write_text(fixed_workflow("math").to_json())
    picture = tmp_path / "math.svg"
    code = main(["run-workflow", str(workflow), "--question", "What is 9 + 9?", "--kind", "math",
                 *_backend(), "--save", str(picture)])  # fmt: skip
    assert code == 0
    out = capsys.readouterr().out
    assert "answer: " in out and "(none)" not in out.split("answer: ")[1].splitlines()[0]
    assert "workflow: Plan -> Programmer -> Verify ? Revise : done -> Format" in out
    assert picture.read_text().startswith("<svg")


@pytest.mark.parametrize(
    ("text", "needle"),
    [("{not json", "does not parse"), ('{"steps": [{"id": "n1", "operator": "Nope"}]}', "Nope")],
)
def test_bad_workflow_file_is_a_one_line_error(tmp_path, capsys, text, needle):
    from lightning_modules.cli import main

    workflow = tmp_path / "bad.json"
    workflow.write_text(text)
    assert main(["run-workflow", str(workflow), "--question", "q", *_backend()]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and str(workflow) in err[0] and needle in err[0]


def test_help_lists_eval_and_run_workflow_without_importing_the_executor():
    import subprocess
    import sys

    from tests.evaluation.conftest import REPO

    code = (
        "import sys, contextlib, io, lightning_modules.cli as c\n"
        "p = c._parser(); text = p.format_help()\n"
        "print('eval' in text and 'run-workflow' in text, 'flowsteer.canvas.executor' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO,
                         env={"PYTHONPATH": str(REPO), "PATH": ""}, timeout=120)  # fmt: skip
    assert out.stdout.split() == ["True", "False"], out.stderr
