"""The CPU quickstart: every real part of FlowSteer, end to end, on a laptop in about a minute.

It builds a tiny Qwen3 policy offline, draws a batch from a GSM8K + HumanEval mixture, and plays
episodes on the canvas: the policy's actions edit the workflow, the real executor runs each
version on a local backend LLM (the same tiny model) with code in the sandbox, and the
diversity-constrained reward scores the result. An untrained tiny policy mostly writes invalid
actions, so a replayed reference episode shows what a complete workflow looks like through the
same canvas, executor and reward.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass
from pathlib import Path

from flowsteer.canvas import FinishConstraints
from flowsteer.director import Episode, FlowDirector
from flowsteer.llm.scripted import ScriptedBackend
from flowsteer.rewards import RewardOutput, WorkflowReward
from flowsteer.tasks import Task, TaskMixture, load_tasks

EXAMPLES = Path(__file__).resolve().parent / "examples"
REFERENCE_EPISODE = EXAMPLES / "episodes" / "reference_workflow.jsonl"


@dataclass(frozen=True)
class QuickstartRow:
    """One episode's line in the quickstart table."""

    policy: str
    episode: Episode
    reward: RewardOutput


def reference_actions(path: Path = REFERENCE_EPISODE) -> list[str]:
    """The policy texts of the reference episode (one JSON object with ``text`` per line)."""
    return [json.loads(line)["text"] for line in path.read_text().splitlines() if line.strip()]


async def run_quickstart(
    out_dir: str | Path = "runs/quickstart",
    data_dir: str | Path = EXAMPLES / "data",
    tasks_per_source: int = 1,
    max_turns: int = 4,
    seed: int = 0,
) -> list[QuickstartRow]:
    """Build the tiny policy, play the episodes, and return one row per episode.

    Args:
        out_dir: Where the tiny policy is built (reused if already there).
        data_dir: Folder with ``gsm8k_sample.jsonl`` and ``humaneval_sample.jsonl``.
        tasks_per_source: Tasks drawn from each source for the tiny policy's episodes.
        max_turns: Turns per tiny-policy episode (short: an untrained policy rarely finishes).
        seed: Seeds the task mixture and the policy's sampling (operators decode greedily), so
            two runs print the same table.
    """
    from flowsteer.canvas.executor import WorkflowExecutor
    from flowsteer.llm.transformers_backend import TransformersBackend
    from flowsteer.models.tiny import build_tiny_model

    data = Path(data_dir)
    policy_dir = build_tiny_model(Path(out_dir) / "policy")
    pools = {
        "gsm8k": load_tasks("gsm8k", data / "gsm8k_sample.jsonl"),
        "humaneval": load_tasks("humaneval", data / "humaneval_sample.jsonl"),
    }
    counts = dict.fromkeys(pools, tasks_per_source)
    batch: list[Task] = TaskMixture(pools, counts=counts, seed=seed).next_batch()

    # One local model serves both roles here; in training the backend is a separate, larger LLM.
    model = TransformersBackend(str(policy_dir), max_new_tokens=48, temperature=1.0)
    executor = WorkflowExecutor(
        model, node_timeout_s=60.0, sandbox_timeout_s=5.0, temperature=0.0, max_tokens_per_call=48
    )
    reward = WorkflowReward()
    rows: list[QuickstartRow] = []
    try:
        director = FlowDirector(
            model, executor=executor, max_turns=max_turns, max_tokens=64, seed=seed
        )
        for task in batch:
            episode = await director.run(task)
            rows.append(QuickstartRow("tiny", episode, await _score(reward, episode)))
        replay = FlowDirector(
            ScriptedBackend(reference_actions()),
            executor=executor,
            finish_constraints=FinishConstraints(
                min_operators=6, require_checker=True, require_structure=True, require_format=True
            ),
        )
        episode = await replay.run(batch[0])
        rows.append(QuickstartRow("reference", episode, await _score(reward, episode)))
    finally:
        await model.aclose()
    return rows


async def _score(reward: WorkflowReward, episode: Episode) -> RewardOutput:
    # Code rewards run the sandbox; keep the event loop free while they do.
    return await asyncio.to_thread(
        reward,
        episode.task,
        episode.graph,
        episode.answer or "",
        truncated=episode.truncated,
        library=episode.library,
    )


def format_rows(rows: list[QuickstartRow]) -> str:
    """The quickstart's table."""
    header = f"{'policy':<10} {'task':<12} {'turns':>5} {'valid':>5} {'R_div':>5} {'R_ans':>5} {'R':>6}  {'answer':<14} workflow"
    lines = [header, "-" * len(header)]
    for row in rows:
        ep, parts = row.episode, row.reward.components
        dsl = ep.graph.to_dsl() or "(empty)"
        answer = " ".join((ep.answer or "-").split())[:14]
        lines.append(
            f"{row.policy:<10} {ep.task.id:<12} {len(ep.turns):>5} {ep.valid_actions:>5} "
            f"{parts['div']:>5.2f} {parts['answer']:>5.2f} {row.reward.total:>6.2f}  {answer:<14} {dsl}"
        )
    return "\n".join(lines)
