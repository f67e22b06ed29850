"""bench/async_rollout.py: the table's medians and ratios, and one short run of each mode."""

from __future__ import annotations

import argparse
import importlib.util
import json
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


def _load():
    spec = importlib.util.spec_from_file_location(
        "bench_async", REPO / "bench" / "async_rollout.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


bench = _load()
ARGS = argparse.Namespace(threads=1, iterations=3, rounds=2, max_new_tokens=8, constrained=False)


def _run(mode: str, rnd: int, wall: list[float]) -> dict:
    return {
        "mode": mode,
        "round": rnd,
        "wall": wall,
        "cpu": [w / 2 for w in wall],
        "rollout": [1.0] * len(wall),
        "waited": [1.0 if mode == "sync" else 0.0] * len(wall),
    }


def test_table_leaves_out_the_first_iteration_and_pairs_rounds() -> None:
    runs = [
        _run("sync", 0, [100.0, 4.0, 4.0]),
        _run("async", 0, [100.0, 3.0, 3.0]),
        _run("sync", 1, [100.0, 8.0, 8.0]),
        _run("async", 1, [100.0, 4.0, 4.0]),
    ]
    text = bench.table(runs, ARGS)
    assert "| sync | 6.00 | 3.00 | 1.00 | 1.00 |" in text
    assert "| async | 3.50 | 1.75 | 1.00 | 0.00 |" in text
    assert "wall 0.75, 0.50; CPU 0.75, 0.50" in text


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["sync", "async"])
def test_one_run_records_every_iteration(tmp_path: Path, mode: str) -> None:
    from flowsteer.models.tiny import build_tiny_model

    policy = build_tiny_model(tmp_path / "policy")
    out = tmp_path / "run.json"
    bench.run_once(mode, 2, 1, 8, False, policy, out)
    run = json.loads(out.read_text())
    assert len(run["wall"]) == len(run["cpu"]) == len(run["rollout"]) == 2
    assert (
        (run["waited"][1] == 0.0 or run["waited"][1] < run["rollout"][1])
        if mode == "async"
        else (run["waited"] == run["rollout"])
    )
