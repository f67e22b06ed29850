"""An evaluation killed mid-way (SIGKILL on a real subprocess) resumes without repeating an
episode and ends with the numbers of an uninterrupted run; other settings are refused."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from flowsteer.evaluation.record import EpisodeRecord
from flowsteer.evaluation.store import EpisodeStore, FingerprintMismatch
from tests.evaluation.conftest import REPO, eval_args

SETTINGS = ("--concurrency", "1", "--baselines", "direct,fixed")


def _lines(path: Path) -> list[str]:
    return path.read_text().splitlines() if path.is_file() else []


def test_killed_evaluation_resumes_to_the_same_metrics(tiny_policy, squad_file, tmp_path, capsys):
    from lightning_modules.cli import main

    out = tmp_path / "killed"
    args = eval_args(tiny_policy, squad_file, out, *SETTINGS, latency_s=0.1, limit=1)
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen(
        [sys.executable, "-m", "lightning_modules.cli", *args],
        cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 240
        while len(_lines(out / "episodes.jsonl")) < 4:
            assert proc.poll() is None, "the evaluation ended before it could be killed"
            assert time.monotonic() < deadline, "no episodes were written"
            time.sleep(0.05)
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.kill()
        proc.wait(timeout=30)
    before = _lines(out / "episodes.jsonl")
    assert 4 <= len(before) < 9  # 3 tasks x (policy, direct, fixed)
    with (out / "episodes.jsonl").open("a") as f:  # a write torn by the kill
        f.write('{"system": "fixed", "index": 2, "task_')

    assert main(args) == 0
    after = _lines(out / "episodes.jsonl")
    assert after[: len(before)] == before  # nothing finished was redone or rewritten
    keys = [EpisodeRecord.from_dict(json.loads(line)).key for line in after]
    assert len(after) == 9 and len(set(keys)) == 9

    whole = tmp_path / "whole"
    assert main(eval_args(tiny_policy, squad_file, whole, *SETTINGS, latency_s=0.1, limit=1)) == 0
    resumed = json.loads((out / "metrics.json").read_text())["systems"]
    uninterrupted = json.loads((whole / "metrics.json").read_text())["systems"]
    assert resumed == uninterrupted

    capsys.readouterr()
    other = eval_args(
        tiny_policy, squad_file, out, *SETTINGS, "--max-turns", "3", latency_s=0.1, limit=1
    )
    assert main(other) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "another setting" in err[0] and "max_turns" in err[0]
    assert _lines(out / "episodes.jsonl") == after


def test_store_drops_a_torn_last_line_and_refuses_other_settings(tmp_path):
    store = EpisodeStore(tmp_path, {"model": "a"})
    store.append(EpisodeRecord("direct", 0, "t0", "gsm8k", "math", answer="1"))
    store.append(EpisodeRecord("direct", 1, "t1", "gsm8k", "math", answer="2"))
    path = tmp_path / "episodes.jsonl"
    whole = path.read_bytes()
    path.write_bytes(whole + b'{"system": "direct", "index": 2')
    again = EpisodeStore(tmp_path, {"model": "a"})
    assert [r.task_id for r in again.records] == ["t0", "t1"]
    assert path.read_bytes() == whole  # cut back to the last whole record
    again.append(EpisodeRecord("direct", 2, "t2", "gsm8k", "math"))
    assert len(EpisodeStore(tmp_path, {"model": "a"}).records) == 3
    try:
        EpisodeStore(tmp_path, {"model": "b"})
    except FingerprintMismatch as err:
        assert "model" in str(err) and "'a'" in str(err) and "\n" not in str(err)
    else:
        raise AssertionError("a store with another setting was opened")


def test_a_bad_line_inside_the_file_is_an_error(tmp_path):
    EpisodeStore(tmp_path, {})
    (tmp_path / "episodes.jsonl").write_text('not json\n{"also": "bad"}\n')
    try:
        EpisodeStore(tmp_path, {})
    except ValueError as err:
        assert "line 1" in str(err)
    else:
        raise AssertionError("a corrupt episodes.jsonl was read")
