"""The prefix cache belongs to one episode and charges what it replays to the budget.

One `WorkflowExecutor` serves many canvases at once, so these tests share one executor (and
one backend) between episodes, as a rollout does.
"""

from __future__ import annotations

import asyncio
import gc
import random

import pytest

from flowsteer.canvas.canvas import Canvas
from flowsteer.canvas.execution import ExecutionScope
from flowsteer.canvas.executor import WorkflowExecutor
from flowsteer.canvas.graph import WorkflowGraph
from flowsteer.llm.scripted import ScriptedBackend
from flowsteer.tasks.task import Task

TASK = Task("gsm8k/test/0", "gsm8k", "math", "How much is 9 times 2?", "18")
EPISODE = [
    "<action>add</action><operator>Custom</operator>",
    "<action>set_prompt</action><prompt>Solve it.</prompt>",
    "<action>add</action><operator>Format</operator>",
    "<action>set_prompt</action><prompt>Only the number.</prompt>",
    "<action>add</action><operator>AnswerGenerate</operator>",
    "<action>set_prompt</action><prompt>Think again.</prompt>",
]


def sampling_backend(seed: int) -> ScriptedBackend:
    """Every call draws a fresh random answer, as a backend sampling at temperature 1 does."""
    rng = random.Random(seed)
    return ScriptedBackend(lambda messages: f"<answer>{rng.randrange(10**9)}</answer>")


def steps() -> list[tuple[str, str | None]]:
    return [("Custom", "Solve."), ("Custom", "Again."), ("Revise", None), ("Format", None)]


def build_at_once() -> WorkflowGraph:
    g = WorkflowGraph()
    g.add_operator("Plan")
    g.add_structure("parallel", ["Custom", "AnswerGenerate"])
    for name, prompt in steps():
        g.add_operator(name, prompt)
    return g


def test_a_workflow_built_edit_by_edit_hits_the_budget_where_one_built_at_once_does():
    backend = ScriptedBackend(lambda messages: "<plan>1. go</plan> <answer>18</answer>")
    at_once = asyncio.run(WorkflowExecutor(backend, max_calls=5).execute(build_at_once(), TASK))
    assert at_once.calls == 5 and not at_once.ok  # the budget cut the run

    executor = WorkflowExecutor(backend, max_calls=5)
    episode = ExecutionScope()
    g = WorkflowGraph()
    g.add_operator("Plan")
    results = [asyncio.run(executor.execute(g, TASK, scope=episode))]
    g.add_structure("parallel", ["Custom", "AnswerGenerate"])
    results.append(asyncio.run(executor.execute(g, TASK, scope=episode)))
    for name, prompt in steps():
        g.add_operator(name, prompt)
        results.append(asyncio.run(executor.execute(g, TASK, scope=episode)))
    last = results[-1]
    assert g.to_dsl() == build_at_once().to_dsl()
    assert last.cached_calls > 0  # the prefix really came from the cache
    assert (last.calls, last.tokens, last.errors) == (at_once.calls, at_once.tokens, at_once.errors)
    assert [r.operator for r in last.trace] == [r.operator for r in at_once.trace]
    assert last.answer == at_once.answer


def test_a_token_budget_counts_replayed_steps_too():
    backend = ScriptedBackend(lambda messages: "<answer>18</answer>")
    one = asyncio.run(WorkflowExecutor(backend).execute(build_at_once(), TASK))
    budget = one.tokens // 2
    at_once = asyncio.run(
        WorkflowExecutor(backend, max_tokens=budget).execute(build_at_once(), TASK)
    )
    executor, episode = WorkflowExecutor(backend, max_tokens=budget), ExecutionScope()
    g = WorkflowGraph()
    for name, prompt in [("Plan", None), *steps()]:
        g.add_operator(name, prompt)
        if name == "Plan":
            g.add_structure("parallel", ["Custom", "AnswerGenerate"])
        last = asyncio.run(executor.execute(g, TASK, scope=episode))
    assert last.cached_calls > 0
    assert (last.calls, last.tokens, last.errors) == (at_once.calls, at_once.tokens, at_once.errors)


@pytest.mark.parametrize("schedule", ["one after the other", "lockstep"])
def test_two_episodes_of_one_task_never_share_a_sampled_call(schedule):
    backend = sampling_backend(seed=7)
    executor = WorkflowExecutor(backend)
    canvases = [Canvas(TASK, executor=executor) for _ in range(2)]

    async def play():
        if schedule == "lockstep":
            for text in EPISODE:
                await asyncio.gather(*(c.step(text) for c in canvases))
        else:
            for canvas in canvases:
                for text in EPISODE:
                    await canvas.step(text)

    asyncio.run(play())
    first, second = (c.last_result for c in canvases)
    assert first is not None and second is not None and first.ok and second.ok
    assert first.answer != second.answer  # independent samples, not one shared call
    outputs = [{r.output for r in res.trace} for res in (first, second)]
    assert not outputs[0] & outputs[1]
    # within an episode the cache still works: every operator was asked exactly once
    assert backend.calls == 2 * 3
    assert executor.cache_stats.hits > 0


def test_a_reset_starts_an_episode_with_an_empty_cache():
    backend = sampling_backend(seed=3)
    executor = WorkflowExecutor(backend)
    canvas = Canvas(TASK, executor=executor)
    answers = []
    for _ in range(2):
        canvas.reset()
        for text in EPISODE[:2]:
            asyncio.run(canvas.step(text))
        answers.append(canvas.last_result.answer)
    assert answers[0] != answers[1] and backend.calls == 2


def test_cache_memory_does_not_grow_with_the_number_of_episodes():
    executor = WorkflowExecutor(ScriptedBackend(lambda messages: "<answer>18</answer>"))
    canvas = Canvas(TASK, executor=executor)
    sizes = []
    for episode in range(30):
        canvas.reset()
        for text in EPISODE:  # each episode writes its own prompts, as a policy does
            asyncio.run(canvas.step(text.replace("</prompt>", f" ({episode})</prompt>")))
        sizes.append((len(executor.caches), executor.cache_stats.size))  # no gc: refcounts
    assert executor.cache_stats.hits > 0
    assert max(sizes) == sizes[0] == (1, 3)  # one live episode, its three steps
    del canvas
    gc.collect()
    assert len(executor.caches) == 0 and executor.cache_stats.size == 0


def test_an_execution_without_a_scope_caches_nothing():
    backend = ScriptedBackend(lambda messages: "<answer>18</answer>")
    executor = WorkflowExecutor(backend)
    g = build_at_once()
    for _ in range(2):
        assert asyncio.run(executor.execute(g, TASK)).cached_calls == 0
    assert executor.cache_stats.size == 0
