"""The terminal view draws every structure kind: parallel branches, the conditional's pass and
fail arms, loop counts."""

from __future__ import annotations

import pytest

pytest.importorskip("rich")

from rich.console import Console

from flowsteer.canvas.graph import WorkflowGraph
from flowsteer.orchestration.terminal import workflow_tree


def test_tree_shows_parallel_conditional_and_loop():
    g = WorkflowGraph()
    g.add_operator("Plan")
    g.add_structure("parallel", ["Programmer", "Programmer"])
    g.add_operator("ScEnsemble")
    g.add_structure("conditional", ["Verify", "Revise"])
    g.add_structure("loop", ["Custom", "Test"], count=3)
    console = Console(width=80, record=True, color_system=None)
    console.print(workflow_tree(g))
    text = console.export_text()
    assert text.count("Programmer") == 2 and "parallel" in text
    assert "check: Verify" in text and "fail -> Revise" in text and "pass -> done" in text
    assert "loop x3" in text and "Custom" in text and "Test" in text
    lines = text.splitlines()
    par = next(i for i, x in enumerate(lines) if "parallel" in x)
    assert "Programmer" in lines[par + 1] and "Programmer" in lines[par + 2], "branches nested"
