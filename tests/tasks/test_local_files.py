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


def test_skip_invalid_drops_a_non_object_record_of_a_json_array(tmp_path):
    f = tmp_path / "gsm8k.json"
    f.write_text(f"[{GOOD}, 5, {GOOD}]")
    with pytest.raises(TaskFormatError, match="record 1: expected an object, got int"):
        load_tasks("gsm8k", f)
    result = read_tasks("gsm8k", f, on_error="skip")
    assert [t.id for t in result.tasks] == ["gsm8k/0", "gsm8k/2"]
    assert [e.index for e in result.skipped] == [1]


def test_a_line_that_is_not_utf8_is_named_or_skipped(tmp_path):
    f = tmp_path / "gsm8k.jsonl"
    f.write_bytes(f"{GOOD}\n".encode() + b'{"question": "q\xff", "answer": "#### 1"}\n' + b"\n")
    with pytest.raises(TaskFormatError, match=r"gsm8k\.jsonl: line 2 is not UTF-8"):
        load_tasks("gsm8k", f)
    result = read_tasks("gsm8k", f, on_error="skip")
    assert len(result.tasks) == 1 and "not UTF-8 text (line 2" in str(result.skipped[0])


def test_a_bad_line_after_blank_lines_has_the_same_record_index_both_ways(tmp_path):
    f = tmp_path / "gsm8k.jsonl"
    f.write_text(f"\n\n{GOOD}\n{{bad\n")
    with pytest.raises(TaskFormatError) as raised:
        load_tasks("gsm8k", f)
    skipped = read_tasks("gsm8k", f, on_error="skip").skipped
    assert raised.value.index == skipped[0].index == 1


def test_the_cli_reports_an_unreadable_file_on_one_line(tmp_path):
    f = tmp_path / "gsm8k.jsonl"
    f.write_bytes(b"\xff\xfe garbage\n")
    out = subprocess.run(
        [sys.executable, "-m", "lightning_modules.cli", "tasks", "gsm8k", str(f)],
        capture_output=True, text=True, timeout=120, cwd=Path(__file__).parents[2],
    )  # fmt: skip
    assert out.returncode == 2
    assert out.stderr.strip().splitlines() == [
        f"flowsteer tasks: error: {f}: line 1 is not UTF-8 text"
    ]
