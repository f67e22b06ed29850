"""Every ```python block of README.md runs as written (offline, in a fresh temporary directory).

A block runs as its own script (`python block.py`) with the repository importable, so a block
that needs a file creates it or uses the shipped examples (`flowsteer.quickstart.EXAMPLES`).
A block may be preceded by ``<!-- readme-test: expect-error NAME -->``: it must then exit
non-zero with the exception NAME in its output (an example of a failure made visible).
"""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
README = REPO / "README.md"
_FENCE = re.compile(r"^```(\w*)\s*$")
_MARKER = re.compile(r"<!--\s*readme-test:\s*expect-error\s+(\w+)\s*-->")


@dataclass(frozen=True)
class Block:
    line: int  # 1-based line of the opening fence
    code: str
    expect_error: str | None


def python_blocks(text: str) -> list[Block]:
    """The ```python blocks of `text`, with their line and any expect-error marker."""
    blocks, lines = [], text.splitlines()
    i = 0
    while i < len(lines):
        m = _FENCE.match(lines[i])
        if m is None:
            i += 1
            continue
        end = next((j for j in range(i + 1, len(lines)) if lines[j].startswith("```")), len(lines))
        if m.group(1) == "python":
            before = next((lines[j] for j in range(i - 1, -1, -1) if lines[j].strip()), "")
            marker = _MARKER.search(before)
            code = "\n".join(lines[i + 1 : end]) + "\n"
            blocks.append(Block(i + 1, code, marker.group(1) if marker else None))
        i = end + 1
    return blocks


BLOCKS = python_blocks(README.read_text(encoding="utf-8"))


def test_the_readme_has_python_blocks_and_the_extractor_finds_markers():
    assert len(BLOCKS) >= 2
    demo = "x\n<!-- readme-test: expect-error KeyError -->\n```python\n{}['a']\n```\n```bash\nls\n```\n"
    assert python_blocks(demo) == [Block(3, "{}['a']\n", "KeyError")]


def _port_in_use(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


@pytest.mark.slow
@pytest.mark.parametrize("block", BLOCKS, ids=[f"README.md:{b.line}" for b in BLOCKS])
def test_readme_block_runs_as_written(block: Block, tmp_path: Path):
    if "127.0.0.1:8000" in block.code and _port_in_use(8000):
        pytest.skip("something listens on 127.0.0.1:8000; the block expects no server there")
    script = tmp_path / f"readme_line_{block.line}.py"
    script.write_text(block.code, encoding="utf-8")
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]),
        "HF_HOME": str(tmp_path / "hf"),  # offline, and nothing written to the user's caches
        "HF_HUB_OFFLINE": "1",
        "OPENAI_API_KEY": os.environ.get("OPENAI_API_KEY") or "readme-test-offline",
        "OMP_NUM_THREADS": "1",
    }
    out = subprocess.run(
        [sys.executable, script.name], cwd=tmp_path, env=env, capture_output=True, text=True,
        timeout=280,
    )  # fmt: skip
    where = f"README.md line {block.line} (```python block)"
    log = f"--- stdout ---\n{out.stdout[-3000:]}\n--- stderr ---\n{out.stderr[-3000:]}"
    if block.expect_error is None:
        assert out.returncode == 0, f"{where} failed with exit code {out.returncode}:\n{log}"
    else:
        assert out.returncode != 0, f"{where} should fail with {block.expect_error}:\n{log}"
        assert f"{block.expect_error}:" in out.stderr, (
            f"{where} failed, but not with {block.expect_error}:\n{log}"
        )
