"""Executor throughput: 64 seeded workflows at once against a loopback server with 50 ms calls.

Each workflow has 5-8 operators and mixes parallel, conditional and loop structures. All 64 run
concurrently through one `WorkflowExecutor` (prefix cache off, so every call is real) and one
`OpenAIBackend` (the real openai client) against the loopback OpenAI-compatible server, which
answers every call after a fixed latency. Replies are scripted per operator so control flow is
deterministic: Review always fails, Verify always passes, solvers agree (a ScEnsemble vote is
then decided without a call). That makes each workflow's critical path computable from its
graph alone: the lower bound on the wall time is the longest critical path among the
workflows, in calls x latency. The script checks that the calls it predicts are the calls made. The server runs in a child process.

Programmer and Test are left out of the mix by default: they run the sandbox, whose cost is
measured separately below (sandbox runs/s, 8 in flight, from ``bench/sandbox.py``), and would
otherwise add CPU time the calls x latency bound does not count. ``--with-sandbox`` puts
Programmer into the solver pool to show that effect too.

    python bench/executor.py [--workflows 64] [--latency 0.05] [--with-sandbox]
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import multiprocessing
import random
import time
from multiprocessing.connection import Connection
from pathlib import Path

from flowsteer.canvas.executor import WorkflowExecutor
from flowsteer.canvas.graph import WorkflowGraph
from flowsteer.llm.loopback_server import LoopbackServer
from flowsteer.llm.openai_backend import OpenAIBackend
from flowsteer.tasks.task import Task

SEED = 0
SOLVERS = ["Custom", "AnswerGenerate"]
CHECKERS = ["Review", "Verify"]
REPLIES = {
    "Plan": "<plan>1. read 2. compute</plan>",
    "Decompose": "<subproblems>1. what is asked?</subproblems>",
    "Programmer": "```python\ndef solve():\n    return 6 * 7\n```",
    "Custom": "6 * 7 = 42 <answer>42</answer>",
    "AnswerGenerate": "Six sevens. <answer>42</answer>",
    "Review": "Not convinced. <verdict>FAIL</verdict> check the product",
    "Verify": "I get 42 too. <verdict>PASS</verdict>",
    "Revise": "Rechecked. <answer>42</answer>",
    "ScEnsemble": "<choice>A</choice>",
    "Aggregate": "Merged. <answer>42</answer>",
    "Format": "<answer>42</answer>",
}
CALLS = {name: 1 for name in REPLIES} | {"ScEnsemble": 0}  # all candidates agree: no call


def reply(request: dict) -> str:
    system = request["messages"][0]["content"]
    return REPLIES[system.split("You are the ", 1)[1].split(" operator", 1)[0]]


def random_workflow(rng: random.Random, solvers: list[str]) -> WorkflowGraph:
    """A workflow of 5-8 operators: solvers first (so checkers have a candidate), then a
    random mix of parallel, conditional, loop and plain steps, always ending in Format."""
    target = rng.randint(5, 8)
    g = WorkflowGraph()
    if rng.random() < 0.5:
        g.add_operator(rng.choice(["Plan", "Decompose"]))
    g.add_structure("parallel", rng.choices(solvers, k=rng.randint(2, 3)))
    g.add_operator(rng.choice(["ScEnsemble", "Aggregate"]))
    kinds = ["conditional", "loop", "parallel", "operator"]
    first = True
    while g.num_operators < target - 1:
        room = target - 1 - g.num_operators
        kind = rng.choice(kinds[:2] if first else kinds) if room >= 2 else "operator"
        first = False  # every workflow gets a conditional or a loop after its ensemble
        if kind == "conditional":
            kids = [rng.choice(CHECKERS), "Revise"] + (["Custom"] if room >= 3 else [])
            g.add_structure("conditional", kids[: min(len(kids), room)])
        elif kind == "loop":
            g.add_structure("loop", [rng.choice(CHECKERS), "Revise"], count=rng.randint(1, 3))
        elif kind == "parallel":
            g.add_structure("parallel", rng.choices(solvers, k=2))
            if g.num_operators < target - 1:
                g.add_operator("ScEnsemble")
        else:
            g.add_operator(rng.choice(["Revise", "Review", "Verify", "AnswerGenerate"]))
    g.add_operator("Format")
    return g


def critical_calls(g: WorkflowGraph) -> tuple[int, int]:
    """(calls on the critical path, total calls) under the scripted replies."""
    path = total = 0
    for step in g.top_level():
        if not step.is_structure:
            path, total = path + CALLS[step.name], total + CALLS[step.name]
            continue
        kids = g.children(step.id)
        if step.name == "parallel":
            path += max(CALLS[k.name] for k in kids)
            total += sum(CALLS[k.name] for k in kids)
        elif step.name == "conditional":
            branch = kids[1] if kids[0].name == "Review" else (kids[2] if len(kids) > 2 else None)
            n = 1 + (CALLS[branch.name] if branch is not None else 0)
            path, total = path + n, total + n
        else:  # loop: Review never passes, Verify passes at once
            n = 0
            for _ in range(step.count or 1):
                for kid in kids:
                    n += CALLS[kid.name]
                    if kid.name == "Verify":
                        break
                else:
                    continue
                break
            path, total = path + n, total + n
    return path, total


def serve(latency_s: float, conn: Connection) -> None:
    """Child process: run the loopback server until the parent says stop."""
    with LoopbackServer(replies=reply, latency_s=latency_s) as server:
        conn.send(server.base_url)
        conn.recv()


async def run_all(graphs: list[WorkflowGraph], base_url: str) -> tuple[float, list]:
    backend = OpenAIBackend(
        model="loopback", base_url=base_url, api_key_env=None, max_concurrency=1024, seed=SEED
    )
    executor = WorkflowExecutor(backend, cache=False, node_timeout_s=60.0)
    tasks = [
        Task(f"bench/{i}", "bench", "math", "What is 6 times 7?", "42") for i in range(len(graphs))
    ]
    # Steady state: the client, its imports and a pool of keep-alive connections as wide as
    # the widest moment of the run exist before timing, as in a trainer that has been running.
    hello = [{"role": "system", "content": "You are the Custom operator."}]
    await asyncio.gather(*(backend.complete(hello) for _ in range(3 * len(graphs))))
    start = time.monotonic()
    results = await asyncio.gather(
        *(executor.execute(g, t) for g, t in zip(graphs, tasks, strict=True))
    )
    wall = time.monotonic() - start
    await backend.aclose()
    return wall, results


def sandbox_rate(in_flight: int = 8, runs: int = 64) -> float:
    """Sandbox runs/s of a trivial program, via bench/sandbox.py (the sandbox helper's)."""
    path = Path(__file__).with_name("sandbox.py")
    spec = importlib.util.spec_from_file_location("bench_sandbox", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.sandbox_runs_per_second(runs, in_flight)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workflows", type=int, default=64)
    parser.add_argument("--latency", type=float, default=0.05)
    parser.add_argument("--with-sandbox", action="store_true")
    parser.add_argument("--sandbox-runs", type=int, default=64)
    args = parser.parse_args()
    solvers = SOLVERS + (["Programmer"] if args.with_sandbox else [])
    rng = random.Random(SEED)
    graphs = [random_workflow(rng, solvers) for _ in range(args.workflows)]
    predicted = [critical_calls(g) for g in graphs]
    # The server runs in its own process, as a real backend would: in a thread of this one it
    # would compete with the client for the GIL and the bound would measure that contention.
    context = multiprocessing.get_context("spawn")
    parent, child = context.Pipe()
    server = context.Process(target=serve, args=(args.latency, child), daemon=True)
    server.start()
    try:
        base_url = parent.recv()
        wall, results = asyncio.run(run_all(graphs, base_url))
    finally:
        parent.send("stop")
        server.join(10)
    calls = sum(r.calls for r in results)
    errors = sum(len(r.errors) for r in results)
    longest = max(p for p, _ in predicted)
    bound = longest * args.latency
    kinds = {
        k: sum(k in g.structure_kinds() for g in graphs)
        for k in ("parallel", "conditional", "loop")
    }
    ops = [g.num_operators for g in graphs]
    print(f"{args.workflows} workflows, {min(ops)}-{max(ops)} operators, with {kinds}")
    print(
        f"answers: {sum(r.answer == '42' for r in results)}/{len(results)} correct, {errors} errors"
    )
    if calls != sum(t for _, t in predicted):
        print(f"WARNING: predicted {sum(t for _, t in predicted)} calls, made {calls}")
    rows = [
        ("backend latency", f"{args.latency * 1000:.0f} ms"),
        ("backend calls", f"{calls}"),
        ("critical path", f"{longest} calls"),
        ("lower bound", f"{bound:.3f} s"),
        ("wall time", f"{wall:.3f} s"),
        ("wall / bound", f"{wall / bound:.2f}  (target <= 1.3)"),
        ("calls / s", f"{calls / wall:.0f}"),
    ]
    rate = sandbox_rate(8, args.sandbox_runs)
    rows.append(("sandbox runs / s (8 in flight)", f"{rate:.1f}"))
    width = max(len(k) for k, _ in rows)
    print("-" * (width + 24))
    for key, value in rows:
        print(f"{key:<{width}}  {value}")


if __name__ == "__main__":
    main()
