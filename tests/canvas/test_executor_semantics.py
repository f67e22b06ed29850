"""Structure semantics of `WorkflowExecutor` with the in-process ScriptedBackend.

Each reply is chosen by the operator named in the system prompt, so a test states what every
operator says and then checks what ran, in which order, and what it cost.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

import pytest

from flowsteer.canvas.execution import ExecutionScope
from flowsteer.canvas.executor import WorkflowExecutor
from flowsteer.canvas.graph import WorkflowGraph
from flowsteer.llm.backend import Completion
from flowsteer.llm.scripted import ScriptedBackend
from flowsteer.operators.library import OperatorLibrary
from flowsteer.operators.spec import OperatorSpec
from flowsteer.tasks.task import Task

TASK = Task("gsm8k/test/0", "gsm8k", "math", "How much is 9 times 2?", "18")


def operator_of(messages) -> str:
    system = messages[0]["content"]
    return system.split("You are the ", 1)[1].split(" operator", 1)[0]


def by_operator(replies: dict[str, str | Callable[[int], str | Completion]]):
    """A script: reply per operator; a callable gets that operator's 0-based call number."""
    counts: dict[str, int] = {}

    def script(messages):
        name = operator_of(messages)
        n = counts.get(name, 0)
        counts[name] = n + 1
        reply = replies[name]
        return reply(n) if callable(reply) else reply

    return script


def sent(result) -> int:
    """Backend calls an execution really sent (not replayed from the cache)."""
    return result.calls - result.cached_calls


def ran(result) -> list[str]:
    return [r.operator for r in result.trace]


def execute(executor: WorkflowExecutor, graph: WorkflowGraph, task: Task = TASK, scope=None):
    return asyncio.run(executor.execute(graph, task, scope=scope))


SOLVERS = {
    "Custom": "9 * 2 = 18\n<answer>18</answer>",
    "AnswerGenerate": "Nine twos are eighteen. <answer>18</answer>",
    "Revise": "<answer>18</answer>",
    "Format": "<answer>18</answer>",
    "Plan": "<plan>1. multiply</plan>",
}


def test_parallel_children_overlap_in_time():
    latency, k = 0.3, 4
    backend = ScriptedBackend(by_operator(SOLVERS), latency_s=latency)
    g = WorkflowGraph()
    g.add_structure("parallel", ["Custom", "AnswerGenerate", "Custom", "AnswerGenerate"])
    start = time.monotonic()
    result = execute(WorkflowExecutor(backend), g)
    wall = time.monotonic() - start
    assert result.ok and result.calls == k
    assert backend.max_in_flight == k
    assert wall < 2 * latency, f"{k} children took {wall:.2f}s; sequential would be {k * latency}"
    assert [r.node_id for r in result.trace] == list(g.node(g.sequence[0]).children)


@pytest.mark.parametrize(
    ("verdict", "expected"),
    [
        ("Wrong sum. <verdict>FAIL</verdict>", ["Custom", "Review", "Revise"]),
        ("All good. <verdict>PASS</verdict>", ["Custom", "Review", "AnswerGenerate"]),
    ],
)
def test_conditional_takes_the_branch_of_the_verdict(verdict, expected):
    backend = ScriptedBackend(by_operator({**SOLVERS, "Review": verdict}))
    g = WorkflowGraph()
    g.add_operator("Custom")
    g.add_structure("conditional", ["Review", "Revise", "AnswerGenerate"])
    result = execute(WorkflowExecutor(backend), g)
    assert ran(result) == expected
    assert result.trace[1].passed is ("PASS" in verdict)


def test_conditional_done_passes_the_candidate_through():
    revise = "<answer>99</answer>"
    backend = ScriptedBackend(
        by_operator({**SOLVERS, "Revise": revise, "Verify": "<verdict>PASS</verdict>"})
    )
    g = WorkflowGraph()
    g.add_operator("Custom")
    g.add_structure("conditional", ["Verify", "Revise"])
    result = execute(WorkflowExecutor(backend), g)
    assert ran(result) == ["Custom", "Verify"]
    assert result.answer == "18" and result.calls == 2


def test_failed_checker_feedback_reaches_the_revision():
    backend = ScriptedBackend(
        by_operator({**SOLVERS, "Verify": "<verdict>FAIL</verdict> you forgot the tax"})
    )
    g = WorkflowGraph()
    g.add_operator("Custom")
    g.add_structure("conditional", ["Verify", "Revise"])
    result = execute(WorkflowExecutor(backend), g)
    assert ran(result) == ["Custom", "Verify", "Revise"]
    revise_prompt = backend.seen[-1][1]["content"]
    assert "you forgot the tax" in revise_prompt and "18" in revise_prompt


def test_loop_stops_as_soon_as_its_checker_passes():
    review = lambda n: "<verdict>PASS</verdict>" if n == 1 else "<verdict>FAIL</verdict> redo"  # noqa: E731
    backend = ScriptedBackend(by_operator({**SOLVERS, "Review": review}))
    g = WorkflowGraph()
    g.add_operator("Custom")
    g.add_structure("loop", ["Review", "Revise"], count=4)
    result = execute(WorkflowExecutor(backend), g)
    assert ran(result) == ["Custom", "Review", "Revise", "Review"]
    assert [r.iteration for r in result.trace] == [0, 0, 0, 1]


def test_loop_runs_count_times_when_its_checker_never_passes():
    backend = ScriptedBackend(by_operator({**SOLVERS, "Review": "<verdict>FAIL</verdict>"}))
    g = WorkflowGraph()
    g.add_operator("Custom")
    g.add_structure("loop", ["Revise", "Review"], count=3)
    result = execute(WorkflowExecutor(backend), g)
    assert ran(result) == ["Custom"] + ["Revise", "Review"] * 3
    assert [r.iteration for r in result.trace[1:]] == [0, 0, 1, 1, 2, 2]
    assert result.calls == 7 and result.ok


def test_node_timeout_is_reported_and_the_run_goes_on():
    backend = ScriptedBackend(by_operator(SOLVERS), latency_s=[5.0, 0.0])
    g = WorkflowGraph()
    g.add_operator("Custom")
    g.add_operator("AnswerGenerate")
    start = time.monotonic()
    result = execute(WorkflowExecutor(backend, node_timeout_s=0.2), g)
    assert time.monotonic() - start < 2.0
    assert result.trace[0].error.startswith("TimeoutError")
    assert result.errors[0].startswith("TimeoutError") and "[n1 Custom]" in result.errors[0]
    assert result.trace[1].error is None and result.answer == "18"


def test_call_budget_exhaustion_is_an_error_and_stops_the_run():
    backend = ScriptedBackend(by_operator(SOLVERS))
    g = WorkflowGraph()
    for name in ("Plan", "Custom", "Revise", "Revise", "Format"):
        g.add_operator(name)
    result = execute(WorkflowExecutor(backend, max_calls=2), g)
    assert backend.calls == 2 and result.calls == 2
    assert ran(result) == ["Plan", "Custom"]  # no node starts once the budget is spent
    assert result.errors == [
        "BudgetExceeded: workflow budget exhausted (2/2 backend calls, "
        f"{result.tokens}/200000 tokens); skipped n3 and everything after"
    ]
    assert result.answer == "18"  # what was produced before the budget ran out is kept


def test_budget_refuses_the_call_that_would_exceed_it_inside_a_parallel_block():
    backend = ScriptedBackend(by_operator(SOLVERS))
    g = WorkflowGraph()
    g.add_structure("parallel", ["Custom", "AnswerGenerate", "Custom"])
    result = execute(WorkflowExecutor(backend, max_calls=2), g)
    assert backend.calls == 2 and result.calls == 2
    refused = [r for r in result.trace if r.error]
    assert len(refused) == 1 and refused[0].error.startswith("BackendError: BudgetExceeded")
    assert result.answer == "18"


def test_token_budget_exhaustion_is_an_error():
    backend = ScriptedBackend(by_operator(SOLVERS))
    g = WorkflowGraph()
    for name in ("Custom", "Revise", "Revise"):
        g.add_operator(name)
    result = execute(WorkflowExecutor(backend, max_tokens=10), g)
    assert backend.calls == 1
    assert result.errors and "BudgetExceeded" in result.errors[0]


def test_backend_error_value_becomes_a_recorded_error():
    backend = ScriptedBackend(by_operator(SOLVERS), errors={0: "HTTP 500: upstream exploded"})
    g = WorkflowGraph()
    g.add_operator("Custom")
    g.add_operator("AnswerGenerate")
    result = execute(WorkflowExecutor(backend), g)
    assert result.trace[0].error == "BackendError: HTTP 500: upstream exploded"
    assert result.errors == ["BackendError: HTTP 500: upstream exploded [n1 Custom]"]
    assert result.answer == "18"


class Exploding:
    """A user operator whose implementation raises."""

    spec = OperatorSpec("Explode", "solving", "Raises.", impl=f"{__name__}:Exploding")

    async def run(self, state, prompt, llm):
        raise RuntimeError("kaboom")


def test_operator_exceptions_and_unknown_operators_are_captured():
    library = OperatorLibrary.default().extend(Exploding.spec)
    backend = ScriptedBackend(by_operator(SOLVERS))
    g = WorkflowGraph()
    g.add_operator("Explode")
    g.add_operator("NoSuchOperator")
    g.add_operator("Custom")
    result = execute(WorkflowExecutor(backend, library=library), g)
    assert result.trace[0].error == "RuntimeError: kaboom"
    assert result.trace[1].error.startswith("UnknownOperatorError")
    assert result.answer == "18" and len(result.errors) == 2


def test_empty_workflow_and_bad_arguments():
    executor = WorkflowExecutor(ScriptedBackend(by_operator(SOLVERS)))
    result = execute(executor, WorkflowGraph())
    assert result.answer is None and result.ok and result.calls == 0
    with pytest.raises(TypeError, match="WorkflowGraph"):
        asyncio.run(executor.execute("Plan -> Format", TASK))
    with pytest.raises(ValueError, match="max_calls"):
        WorkflowExecutor(ScriptedBackend(), max_calls=0)


def test_cache_reuses_the_prefix_and_an_upstream_edit_invalidates_downstream():
    backend = ScriptedBackend(by_operator(SOLVERS))
    executor = WorkflowExecutor(backend)
    episode = ExecutionScope()
    g = WorkflowGraph()
    g.add_operator("Plan", "List the steps.")
    g.add_structure("parallel", ["Custom", "AnswerGenerate"])
    first = execute(executor, g, scope=episode)
    assert first.calls == 3 and backend.calls == 3
    g.add_operator("Format")  # append: only the new step runs
    second = execute(executor, g, scope=episode)
    assert backend.calls == 4 and second.cached_calls == 3
    assert second.calls == 4  # the replayed steps still cost what they replace
    assert ran(second) == ["Plan", "Custom", "AnswerGenerate", "Format"]
    assert second.answer == "18" and executor.cache_stats.hits == 2
    g.set_prompt("n1", "A different plan prompt.")  # upstream edit: everything reruns
    third = execute(executor, g, scope=episode)
    assert third.cached_calls == 0 and backend.calls == 8
    g.set_prompt(g.sequence[-1], "Only the number.")  # downstream edit: only Format reruns
    fourth = execute(executor, g, scope=episode)
    assert fourth.calls - fourth.cached_calls == 1 and backend.calls == 9
    other = Task("gsm8k/test/1", "gsm8k", "math", "How much is 9 times 2?", "18")
    assert execute(executor, g, other, scope=episode).cached_calls == 0  # per task too
    assert execute(executor, g).cached_calls == 0  # no scope: no cache


def test_cache_does_not_store_failed_steps_and_can_be_switched_off():
    backend = ScriptedBackend(by_operator(SOLVERS), errors={0: "HTTP 503"})
    executor = WorkflowExecutor(backend)
    episode = ExecutionScope()
    g = WorkflowGraph()
    g.add_operator("Custom")
    assert not execute(executor, g, scope=episode).ok
    again = execute(executor, g, scope=episode)
    assert again.ok and again.calls == 1 and again.cached_calls == 0  # failure not replayed
    off = WorkflowExecutor(ScriptedBackend(by_operator(SOLVERS)), cache=False)
    assert execute(off, g, scope=episode).cached_calls == 0
    assert execute(off, g, scope=episode).cached_calls == 0
    assert off.cache_stats.hits == 0


def test_a_checker_that_cannot_reach_a_verdict_takes_the_fail_branch():
    review = Completion.failure("HTTP 500: checker down")
    backend = ScriptedBackend(by_operator({**SOLVERS, "Review": review}))
    g = WorkflowGraph()
    g.add_operator("Custom")
    g.add_structure("conditional", ["Review", "Revise", "AnswerGenerate"])
    result = execute(WorkflowExecutor(backend), g)
    assert ran(result) == ["Custom", "Review", "Revise"]
    assert result.trace[1].error == "BackendError: HTTP 500: checker down"


def test_parallel_block_makes_its_first_answer_the_candidate():
    replies = {**SOLVERS, "Custom": "<answer>17</answer>", "AnswerGenerate": "<answer>19</answer>"}
    backend = ScriptedBackend(by_operator(replies))
    g = WorkflowGraph()
    g.add_structure("parallel", ["Custom", "AnswerGenerate"])
    assert execute(WorkflowExecutor(backend), g).answer == "17"


def test_loop_starts_no_node_once_the_budget_is_spent():
    backend = ScriptedBackend(by_operator({**SOLVERS, "Review": "<verdict>FAIL</verdict>"}))
    g = WorkflowGraph()
    g.add_operator("Custom")
    g.add_structure("loop", ["Revise", "Review"], count=5)
    result = execute(WorkflowExecutor(backend, max_calls=3), g)
    assert backend.calls == 3 and ran(result) == ["Custom", "Revise", "Review"]
    assert all(r.error is None for r in result.trace)
    # the iterations the budget cut off are reported, as skipped top-level steps are
    assert result.errors == [
        "BudgetExceeded: workflow budget exhausted (3/3 backend calls, "
        f"{result.tokens}/200000 tokens); skipped the rest of loop n2"
    ]
    # a loop whose last node spends the budget has skipped nothing
    backend = ScriptedBackend(by_operator({**SOLVERS, "Review": "<verdict>FAIL</verdict>"}))
    g = WorkflowGraph()
    g.add_structure("loop", ["Revise", "Review"], count=1)
    assert execute(WorkflowExecutor(backend, max_calls=2), g).ok


def test_node_outputs_are_cut_to_max_output_chars():
    long = "x" * 500 + " <answer>18</answer>"
    backend = ScriptedBackend(by_operator({**SOLVERS, "Custom": long}))
    g = WorkflowGraph()
    g.add_operator("Custom")
    result = execute(WorkflowExecutor(backend, max_output_chars=100), g)
    assert result.answer == "18"
    assert result.trace[0].output == long[:100] and result.node_outputs["n1"] == long[:100]


def test_cache_key_covers_children_prompts_and_loop_count():
    backend = ScriptedBackend(by_operator({**SOLVERS, "Review": "<verdict>FAIL</verdict>"}))
    executor = WorkflowExecutor(backend)
    episode = ExecutionScope()
    g = WorkflowGraph()
    block = g.add_structure("parallel", ["Custom", "AnswerGenerate"])
    loop = g.add_structure("loop", ["Revise", "Review"], count=1)
    assert sent(execute(executor, g, scope=episode)) == 4
    assert sent(execute(executor, g, scope=episode)) == 0  # unchanged: all from the cache
    g.set_prompt(g.children(block)[0].id, "Answer in words.")  # a child's prompt changed
    assert sent(execute(executor, g, scope=episode)) == 4
    g.set_count(loop, 2)  # one more iteration: the loop reruns, the parallel block does not
    assert sent(execute(executor, g, scope=episode)) == 4
    g.set_prompt(g.children(loop)[1].id, "Be strict.")
    assert sent(execute(executor, g, scope=episode)) == 4


def test_cache_is_not_used_past_the_first_miss():
    # The first step failed (not stored) but the second was stored; when the first reruns,
    # the second must rerun on its new output rather than replay the stale one.
    backend = ScriptedBackend(by_operator(SOLVERS), errors={0: "HTTP 503"})
    executor = WorkflowExecutor(backend)
    episode = ExecutionScope()
    g = WorkflowGraph()
    g.add_operator("Custom")
    g.add_operator("AnswerGenerate")
    assert sent(execute(executor, g, scope=episode)) == 2
    again = execute(executor, g, scope=episode)
    assert again.ok and sent(again) == 2 and ran(again) == ["Custom", "AnswerGenerate"]


def test_prefix_cache_is_a_bounded_lru():
    from flowsteer.canvas.prefix_cache import PrefixCache

    cache = PrefixCache(max_entries=2)
    cache.put("a", 1)
    cache.put("b", 2)
    assert cache.get("a") == 1  # a is now the most recently used
    cache.put("c", 3)
    assert cache.get("b") is None and cache.get("a") == 1 and cache.get("c") == 3
    stats = cache.stats
    assert (stats.hits, stats.misses, stats.stores, stats.evictions, stats.size) == (3, 1, 3, 1, 2)
    assert PrefixCache.key("p", [1, "x"]) == PrefixCache.key("p", [1, "x"])
    assert PrefixCache.key("p", [1, "x"]) != PrefixCache.key("q", [1, "x"])
