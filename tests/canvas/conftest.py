"""Canvas test fixtures: a scripted executor, a toy task, and the graph-invariant check."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable
from pathlib import Path

import networkx as nx
import pytest

from flowsteer.canvas import ExecutionResult, NodeRecord, WorkflowGraph
from flowsteer.operators import OperatorLibrary
from flowsteer.tasks import Task


class ScriptedExecutor:
    """Implements the Executor protocol: returns scripted results in order (the last repeats);
    by default, a result whose answer names the workflow, and a trace with one record per
    operator (checkers pass). Records every graph it ran."""

    def __init__(self, results: list[ExecutionResult | Exception] | None = None) -> None:
        self.results = list(results or [])
        self.calls: list[str] = []

    async def execute(self, graph: WorkflowGraph, task: Task) -> ExecutionResult:
        self.calls.append(graph.to_dsl())
        if self.results:
            item = self.results.pop(0) if len(self.results) > 1 else self.results[0]
            if isinstance(item, Exception):
                raise item
            return item
        trace = [
            NodeRecord(n.id, n.name, f"out of {n.id}", passed=True if n.name == "Verify" else None)
            for n in graph.operator_nodes()
        ]
        return ExecutionResult(
            answer="42", node_outputs={r.node_id: r.output for r in trace}, trace=trace,
            calls=len(trace), tokens=10 * len(trace),
        )  # fmt: skip


@pytest.fixture
def task() -> Task:
    return Task("toy/0", "toy", "math", "What is 6 * 7?", "42")


@pytest.fixture
def library() -> OperatorLibrary:
    return OperatorLibrary.default()


@pytest.fixture
def executor() -> ScriptedExecutor:
    return ScriptedExecutor()


@pytest.fixture
def scripted_executor_cls() -> type[ScriptedExecutor]:
    return ScriptedExecutor


@pytest.fixture
def run():
    """Run a coroutine to completion on a fresh loop (tests are not async)."""
    return asyncio.run


def check_invariants(graph: WorkflowGraph, library: OperatorLibrary) -> None:
    ids = [n.id for n in graph.walk()]
    assert len(ids) == len(set(ids)) == len(graph), "ids unique and every node listed once"
    assert all(int(i[1:]) < int(graph.next_id[1:]) for i in ids), "ids below the next id"
    g = graph.to_networkx()
    assert set(g.nodes) == set(ids)
    assert nx.is_directed_acyclic_graph(g)
    if ids:
        reach = nx.descendants(g, graph.sequence[0]) | {graph.sequence[0]}
        assert reach == set(ids), "every node reachable from the first step"
    assert graph.validate(library) == [], "children counts and semantics valid"
    for node in graph.walk():
        if node.is_structure:
            assert all(graph.parent(c) == node.id for c in node.children)
            assert all(not graph.node(c).is_structure for c in node.children)


@pytest.fixture
def invariants(library):
    return lambda graph: check_invariants(graph, library)


@pytest.fixture
def check_golden() -> Callable[[Path, str], None]:
    """Compare text with a golden file. A missing golden is a failure (so deleting one cannot
    make a test pass); ``FLOWSTEER_UPDATE_GOLDEN=1`` (re)writes them."""

    def check(path: Path, text: str) -> None:
        if os.environ.get("FLOWSTEER_UPDATE_GOLDEN"):
            path.write_text(text, encoding="utf-8")
        assert path.exists(), f"golden file {path} is missing; run with FLOWSTEER_UPDATE_GOLDEN=1"
        assert text == path.read_text(encoding="utf-8"), f"{path.name} changed; see the diff"

    return check
