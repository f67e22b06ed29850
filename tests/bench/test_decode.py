"""bench/decode.py: both sides sample the same batch, and the fixed-length mode is exact."""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "bench"))

import decode  # noqa: E402
import grpo_workload as wl  # noqa: E402


def test_row_length_counts_up_to_the_first_stop() -> None:
    assert decode._length([5, 6, 2, 0, 0], 5) == 3
    assert decode._length([5, 6, 7], 3) == 3
    assert decode._length([0, 0], 2) == 1  # a sampled pad/stop id 0 ends the row too


def test_fixed_length_gives_both_sides_the_whole_budget(tmp_path: Path) -> None:
    tiny = wl.build_model("tiny", tmp_path)
    fixed = decode.measure(tiny, fixed=True, repeats=1)
    assert fixed["engine_tokens"] == fixed["generate_tokens"] == 32 * 64
    assert fixed["engine"] > 0 and fixed["generate"] > 0
    free = decode.measure(tiny, fixed=False, repeats=1)
    assert 32 <= free["engine_tokens"] <= 32 * 64
