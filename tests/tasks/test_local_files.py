"""Reading local files: skipping malformed lines, empty files, and no trace in the user's
datasets cache or on the terminal (issue 8.18)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from flowsteer.tasks import TaskFormatError, load_tasks, read_tasks

GOOD = json.dumps({"question": "Tom has 3 apples and buys 4. How many?", "answer": "3+4=7\n#### 7"})


def test_skip_invalid_drops_only_the_malformed_line(tmp_path):
    f = tmp_path / "gsm8k.jsonl"
    f.write_text(f"{GOOD}\n{{not json\n\n{GOOD}\n")
    with pytest.raises(TaskFormatError, match="invalid JSON"):
        load_tasks("gsm8k", f)
    result = read_tasks("gsm8k", f, on_error="skip")
    assert [t.answer for t in result.tasks] == ["7", "7"]
    assert len(result.skipped) == 1 and "line 2" in str(result.skipped[0])
    assert result.skipped[0].index == 1


def test_skip_invalid_reads_a_file_arrow_cannot_type(tmp_path):
    f = tmp_path / "gsm8k.jsonl"
    f.write_text(f'{GOOD}\n{{"question": 5, "answer": "#### 1"}}\n{GOOD}\n')
    result = read_tasks("gsm8k", f, on_error="skip")
    assert len(result.tasks) == 2 and len(result.skipped) == 1
    assert result.skipped[0].field == "question"


@pytest.mark.parametrize("text", ["", "\n  \n"])
def test_an_empty_file_says_it_is_empty(tmp_path, text):
    f = tmp_path / "empty.jsonl"
    f.write_text(text)
    for on_error in ("raise", "skip"):
        with pytest.raises(TaskFormatError, match="empty: it holds no records"):
            load_tasks("gsm8k", f, on_error=on_error)


def test_local_loads_stay_out_of_the_users_cache_and_are_quiet(tmp_path):
    f = tmp_path / "gsm8k.jsonl"
    f.write_text(f"{GOOD}\n{GOOD}\n")
    home = tmp_path / "hf"
    env = {**os.environ, "HF_HOME": str(home), "HF_DATASETS_CACHE": str(home / "datasets")}
    code = f"from flowsteer.tasks import load_tasks\nprint(len(load_tasks('gsm8k', {str(f)!r})))\n"
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, env=env,
        cwd=Path(__file__).parents[2],
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "2"
    assert "Generating" not in out.stderr and "%|" not in out.stderr, out.stderr
    written = sorted(str(p.relative_to(home)) for p in home.rglob("*") if p.is_file())
    assert written == [], written
