"""`flowsteer tasks SOURCE PATH` on each of the six evaluation sources, as a user runs it."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

DATA = Path(__file__).parents[1] / "tasks" / "data"


def _flowsteer(*args: str) -> subprocess.CompletedProcess:
    exe = shutil.which("flowsteer") or str(Path(sys.executable).parent / "flowsteer")
    return subprocess.run([exe, *args], capture_output=True, text=True, timeout=300)


@pytest.mark.slow  # six console-script start-ups
@pytest.mark.parametrize(
    ("source", "summary", "first_id"),
    [
        ("triviaqa", "3 tasks (qa: 3)", "tc_33"),
        ("nq_open", "2 tasks (qa: 2)", "nq_open/0"),
        ("math_qa", "3 tasks (math: 3)", "math_qa/0"),
        ("aime", "3 tasks (math: 3)", "aime/2025-I-1"),
        ("apps", "5 tasks (code: 5)", "apps/4001"),
        ("ds1000", "4 tasks (code: 4)", "ds1000/0"),
    ],
)
def test_tasks_command_loads_each_evaluation_source(source, summary, first_id):
    out = _flowsteer("tasks", source, str(DATA / f"{source}.jsonl"))
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert lines[0] == summary
    assert json.loads(lines[1])["id"] == first_id


def test_tasks_command_reports_a_malformed_apps_record_by_field(tmp_path):
    record = json.loads((DATA / "apps.jsonl").read_text().splitlines()[0])
    record["input_output"] = "{broken"
    bad = tmp_path / "apps.jsonl"
    bad.write_text(json.dumps(record) + "\n")
    out = _flowsteer("tasks", "apps", str(bad))
    assert out.returncode == 2 and "Traceback" not in out.stderr
    assert f"{bad}: record 0: field 'input_output': not valid JSON" in out.stderr
