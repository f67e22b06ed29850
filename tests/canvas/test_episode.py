"""A scripted episode: the policy's texts replayed from a file build the reference workflow.

The replay file (`episodes/plan_parallel_ensemble.jsonl`, one ``{"text": ...}`` per turn) is
meant for reuse: run the same texts against the real executor to exercise the whole stack.
Observations are pinned in `golden/plan_parallel_ensemble.txt`; regenerate with
``FLOWSTEER_UPDATE_GOLDEN=1 pytest tests/canvas``.
"""

from __future__ import annotations

import json
from pathlib import Path

from flowsteer.canvas import Canvas, FinishConstraints

HERE = Path(__file__).parent
EPISODE = HERE / "episodes" / "plan_parallel_ensemble.jsonl"
GOLDEN = HERE / "golden" / "plan_parallel_ensemble.txt"
TARGET = "Plan -> [Programmer, Custom] -> ScEnsemble -> Verify ? Revise : done -> Format"
SEPARATOR = "\n=== turn {} ===\n"


def test_replayed_episode_builds_the_reference_workflow(
    task, executor, run, invariants, check_golden
):
    texts = [json.loads(line)["text"] for line in EPISODE.read_text().splitlines() if line.strip()]
    fc = FinishConstraints(
        min_operators=5, require_checker=True, require_structure=True, require_format=True
    )
    canvas = Canvas(task, executor, finish_constraints=fc)
    observations = [canvas.reset()]

    async def play():
        results = []
        for text in texts:
            results.append(await canvas.step(text))
            invariants(canvas.graph)
        return results

    results = run(play())
    observations += [r.observation for r in results]
    assert results[-1].done and not results[-1].info.truncated
    assert results[5].info.error_code == "finish_constraints"  # an early finish is refused
    assert canvas.graph.to_dsl() == TARGET
    assert canvas.graph.node("n3").prompt.startswith("Write Python")
    assert canvas.graph.node("n5").prompt == ""  # ScEnsemble kept its default
    assert executor.calls[-1] == TARGET
    body = "".join(SEPARATOR.format(i) + obs for i, obs in enumerate(observations))
    check_golden(GOLDEN, body.lstrip("\n"))
