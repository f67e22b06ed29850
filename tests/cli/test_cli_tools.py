"""The `flowsteer` console script, run as a real subprocess the way a user runs it."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

DATA = Path(__file__).parents[1] / "tasks" / "data"


def _flowsteer(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    exe = shutil.which("flowsteer") or str(Path(sys.executable).parent / "flowsteer")
    return subprocess.run([exe, *args], capture_output=True, text=True, timeout=300, cwd=cwd)


def test_help_lists_the_commands():
    out = _flowsteer("--help")
    assert out.returncode == 0, out.stderr
    assert "tiny-model" in out.stdout and "tasks" in out.stdout


def test_tiny_model_command_writes_a_loadable_model(tmp_path):
    out = _flowsteer(
        "tiny-model",
        str(tmp_path / "policy"),
        "--hidden-size",
        "32",
        "--num-heads",
        "2",
        "--num-kv-heads",
        "1",
    )
    assert out.returncode == 0, out.stderr
    config = json.loads((tmp_path / "policy" / "config.json").read_text())
    assert (config["model_type"], config["hidden_size"]) == ("qwen3", 32)


def test_tasks_command_summarises_and_reports_errors_without_traceback(tmp_path):
    out = _flowsteer("tasks", "humaneval", str(DATA / "humaneval.jsonl"))
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("1 tasks (code: 1)")
    assert json.loads(out.stdout.splitlines()[1])["entry_point"] == "add"

    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"question": "q", "answer": "no hashes"}\n')
    out = _flowsteer("tasks", "gsm8k", str(bad))
    assert out.returncode == 2
    assert "Traceback" not in out.stderr
    assert f"{bad}: record 0: field 'answer'" in out.stderr

    out = _flowsteer("tasks", "gsm8k", str(bad), "--skip-invalid")
    assert out.returncode == 0
    assert "0 tasks" in out.stdout and "1 bad records skipped" in out.stdout


@pytest.mark.parametrize(
    "args", [["tasks", "nosuch", "x.jsonl"], ["tiny-model", "/tmp/x", "--hidden-size", "30"]]
)
def test_bad_arguments_give_a_one_line_error(args):
    out = _flowsteer(*args)
    assert out.returncode == 2
    assert "Traceback" not in out.stderr and "error:" in out.stderr


@pytest.mark.slow
def test_quickstart_plays_episodes_end_to_end(tmp_path):
    out = _flowsteer("quickstart", "--out-dir", str(tmp_path / "run"), "--max-turns", "2")
    assert out.returncode == 0, out.stderr
    rows = [line.split() for line in out.stdout.splitlines()[2:]]
    assert [r[0] for r in rows] == ["tiny", "tiny", "reference"]
    assert {r[1].split("/")[0] for r in rows[:2]} == {"gsm8k", "HumanEval"}
    tiny_turns = [int(r[2]) for r in rows[:2]]
    assert all(1 <= t <= 2 for t in tiny_turns)
    reference = out.stdout.splitlines()[-1]
    assert (
        "Plan -> [Programmer, Custom] -> ScEnsemble -> Verify ? Revise : done -> Format"
        in reference
    )
    assert rows[2][4] == "1.00"  # R_div: the reference workflow has every part the reward asks for
    assert (tmp_path / "run" / "policy" / "config.json").is_file()


def test_show_and_limit_must_not_be_negative():
    out = _flowsteer("tasks", "humaneval", str(DATA / "humaneval.jsonl"), "--show", "-1")
    assert out.returncode == 2 and "--show: must be >= 0, got -1" in out.stderr
    out = _flowsteer("tasks", "humaneval", str(DATA / "humaneval.jsonl"), "--limit", "-1")
    assert out.returncode == 2 and "--limit: must be >= 0" in out.stderr
    out = _flowsteer("tasks", "humaneval", str(DATA / "humaneval.jsonl"), "--show", "0")
    assert out.returncode == 0 and out.stdout.splitlines() == ["1 tasks (code: 1)"]


def test_skip_invalid_skips_a_malformed_json_line(tmp_path):
    f = tmp_path / "g.jsonl"
    f.write_text('{"question": "q", "answer": "#### 3"}\n{oops\n')
    out = _flowsteer("tasks", "gsm8k", str(f), "--skip-invalid")
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("1 tasks") and "1 bad records skipped" in out.stdout


def test_tiny_model_refuses_to_keep_an_existing_model_with_other_settings(tmp_path):
    target = str(tmp_path / "policy")
    small = ["--hidden-size", "32", "--num-heads", "2", "--num-kv-heads", "1"]
    assert _flowsteer("tiny-model", target, *small).returncode == 0
    out = _flowsteer("tiny-model", target, "--hidden-size", "128")
    assert out.returncode == 2 and "Traceback" not in out.stderr
    assert "already holds a model (hidden_size=32" in out.stderr and "--overwrite" in out.stderr
    config = json.loads((tmp_path / "policy" / "config.json").read_text())
    assert config["hidden_size"] == 32  # untouched
    out = _flowsteer("tiny-model", target, "--hidden-size", "128", "--force")
    assert out.returncode == 0, out.stderr
    assert json.loads((tmp_path / "policy" / "config.json").read_text())["hidden_size"] == 128


def test_tiny_model_keeps_the_same_build_and_refuses_another_seed(tmp_path):
    """Running the same build twice (the README's install command, re-run) is a no-op; the same
    shape with another seed is a different model and is refused, never kept silently."""
    target = str(tmp_path / "policy")
    small = ["--hidden-size", "32", "--num-heads", "2", "--num-kv-heads", "1"]
    assert _flowsteer("tiny-model", target, *small).returncode == 0
    weights = (tmp_path / "policy" / "model.safetensors").read_bytes()
    again = _flowsteer("tiny-model", target, *small)
    assert again.returncode == 0, again.stderr
    assert "with these settings; kept" in again.stdout
    other = _flowsteer("tiny-model", target, *small, "--seed", "1")
    assert other.returncode == 2 and "already holds a model" in other.stderr
    assert (tmp_path / "policy" / "model.safetensors").read_bytes() == weights


def test_version_option_and_attribute():
    import os
    from importlib.metadata import version

    import flowsteer

    assert flowsteer.__version__ == version("flowsteer")  # installed: the package's metadata
    repo = Path(__file__).parents[2]
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(repo), os.environ.get("PYTHONPATH", "")]),
    }
    out = subprocess.run(
        [sys.executable, "-m", "lightning_modules.cli", "--version"],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=repo,
        env=env,
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == f"flowsteer {flowsteer.__version__}"


def test_version_falls_back_when_the_package_is_not_installed():
    code = (
        "import importlib.metadata as m\n"
        "def missing(name):\n"
        "    raise m.PackageNotFoundError(name)\n"
        "m.version = missing\n"
        "import flowsteer\n"
        "print(flowsteer.__version__)\n"
    )
    repo = Path(__file__).parents[2]
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=repo
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "0+unknown"
