"""`run_evaluation`: every system on every task, episodes stored as they finish, then the report.

Systems run one after another (``policy`` and ``untrained`` through their `PolicyPlayer`, the
baselines with up to ``concurrency`` tasks in flight); within a system, episodes already in
``episodes.jsonl`` are not played again. Each finished episode is scored and appended at once,
so a killed evaluation resumes where it stopped; the fingerprint check of `EpisodeStore` keeps
another evaluation's episodes out.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol, TextIO

from flowsteer.canvas.executor import WorkflowExecutor
from flowsteer.canvas.graph import WorkflowGraph
from flowsteer.evaluation.baselines import answer_in_one_call, fixed_workflow, run_workflow_on
from flowsteer.evaluation.identity import RunIdentity
from flowsteer.evaluation.progress import Progress
from flowsteer.evaluation.record import EpisodeRecord
from flowsteer.evaluation.report import write_report
from flowsteer.evaluation.scoring import score_record
from flowsteer.evaluation.store import EpisodeStore
from flowsteer.tasks import Task

BASELINES = ("direct", "cot", "fixed", "untrained")


class Player(Protocol):
    """Plays (index, task) pairs and hands each scored record to ``on_done``."""

    async def play(
        self,
        items: Sequence[tuple[int, Task]],
        on_done: Callable[[EpisodeRecord], Awaitable[None]],
    ) -> None: ...


def parse_baselines(text: str) -> list[str]:
    """``direct,cot,fixed,untrained`` (any subset; ``none`` or empty: no baselines)."""
    names = [n.strip() for n in text.split(",") if n.strip() and n.strip() != "none"]
    unknown = [n for n in names if n not in BASELINES]
    if unknown:
        raise ValueError(f"--baselines: unknown {unknown}; choose from {','.join(BASELINES)}")
    return list(dict.fromkeys(names))


def check_unique(tasks: Sequence[Task]) -> None:
    """Episodes are keyed by (source, task id): two tasks with one key cannot both be stored."""
    seen: set[tuple[str, str]] = set()
    for task in tasks:
        if (task.source, task.id) in seen:
            raise ValueError(f"dataset {task.source}: task id {task.id!r} appears twice")
        seen.add((task.source, task.id))


async def _bounded(
    items: Sequence[tuple[int, Task]],
    run: Callable[[int, Task], Awaitable[EpisodeRecord]],
    on_done: Callable[[EpisodeRecord], Awaitable[None]],
    concurrency: int,
) -> None:
    gate = asyncio.Semaphore(concurrency)

    async def one(index: int, task: Task) -> None:
        async with gate:
            record = await run(index, task)
            await on_done(await score_record(record, task))

    await asyncio.gather(*(one(i, t) for i, t in items))


async def play_system(
    system: str,
    tasks: Sequence[Task],
    store: EpisodeStore,
    *,
    player: Player | None = None,
    executor: WorkflowExecutor | None = None,
    workflows: Mapping[str, WorkflowGraph] | None = None,
    concurrency: int = 8,
    baseline_max_tokens: int | None = None,
    stream: TextIO | None = None,
) -> None:
    """Play the tasks ``store`` does not hold yet for one system and store each record."""
    todo = [(i, t) for i, t in enumerate(tasks) if not store.done((system, t.source, t.id))]
    progress = Progress(system, len(todo), stream)

    async def on_done(record: EpisodeRecord) -> None:
        store.append(record)
        progress.update(record.score)

    try:
        if player is not None:
            await player.play(todo, on_done)
            return
        if executor is None:
            raise ValueError(f"the {system} baseline needs a backend (--backend)")
        if system in ("direct", "cot"):
            cot = system == "cot"
            temperature = executor.settings.temperature or 0.0

            async def run(index: int, task: Task) -> EpisodeRecord:
                return await answer_in_one_call(
                    task, index, executor.backend, cot=cot,
                    max_tokens=baseline_max_tokens, temperature=temperature,
                )  # fmt: skip
        else:
            graphs = dict(workflows or {})

            async def run(index: int, task: Task) -> EpisodeRecord:
                graph = graphs.get(task.kind) or fixed_workflow(task.kind)
                return await run_workflow_on(graph, task, index, executor, system)

        await _bounded(todo, run, on_done, concurrency)
    finally:
        progress.close()


async def run_evaluation(
    out_dir: str | Path,
    identity: RunIdentity,
    tasks: Sequence[Task],
    *,
    players: Mapping[str, Player] | None = None,
    executor: WorkflowExecutor | None = None,
    workflows: Mapping[str, WorkflowGraph] | None = None,
    notes: Sequence[str] = (),
    concurrency: int = 8,
    baseline_max_tokens: int | None = None,
    stream: TextIO | None = None,
    title: str = "FlowSteer evaluation",
) -> dict[str, Any]:
    """Evaluate ``identity.systems`` on ``tasks`` into ``out_dir``; returns ``metrics.json``.

    Args:
        out_dir: The report directory (resumed when it holds this evaluation's episodes).
        identity: What is evaluated; its fingerprint guards the out dir.
        tasks: The evaluation sets, concatenated.
        players: The policy systems (``policy``, ``untrained``) by name.
        executor: Runs the fixed/saved workflows; its backend answers ``direct`` and ``cot``.
        workflows: The workflow per task kind for ``fixed``/``workflow`` (default: the fixed
            baseline's).
        notes: Lines for the report.
        concurrency: Most baseline tasks in flight.
        baseline_max_tokens: Completion budget of the one-call baselines.
        stream: Where progress goes (default: stderr).
        title: The report's heading.
    """
    check_unique(tasks)
    store = EpisodeStore(out_dir, identity.fingerprint())
    players = dict(players or {})
    for system in identity.systems:
        await play_system(
            system, tasks, store, player=players.get(system), executor=executor,
            workflows=workflows, concurrency=concurrency,
            baseline_max_tokens=baseline_max_tokens, stream=stream,
        )  # fmt: skip
    library = executor.library if executor is not None else None
    return write_report(out_dir, identity.to_dict(), store.records, notes, library, title)


__all__ = [
    "BASELINES",
    "Player",
    "check_unique",
    "parse_baselines",
    "play_system",
    "run_evaluation",
]
