"""The executor over the real stack: `OpenAIBackend` (the real openai client) against the real
loopback HTTP server, with injected faults, and the canvas's scripted episode end to end."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

from flowsteer.canvas.canvas import Canvas, FinishConstraints
from flowsteer.canvas.executor import WorkflowExecutor
from flowsteer.canvas.graph import WorkflowGraph
from flowsteer.llm.loopback_server import Fault, LoopbackServer
from flowsteer.llm.openai_backend import OpenAIBackend
from flowsteer.rewards.math_answer import MathAnswerScorer
from flowsteer.tasks.sources import parse_gsm8k
from flowsteer.tasks.task import Task

HERE = Path(__file__).parent
REPO = HERE.parents[1]
EPISODE = HERE / "episodes" / "plan_parallel_ensemble.jsonl"
TARGET = "Plan -> [Programmer, Custom] -> ScEnsemble -> Verify ? Revise : done -> Format"


def gsm8k_task() -> Task:
    line = (REPO / "flowsteer/examples/data/gsm8k_sample.jsonl").read_text().splitlines()[0]
    return parse_gsm8k(json.loads(line), "gsm8k/test/0")


def operator_of(request: dict) -> str:
    system = request["messages"][0]["content"]
    return system.split("You are the ", 1)[1].split(" operator", 1)[0]


def janet_replies(verify: str = "Own result 18. <answer>18</answer> <verdict>PASS</verdict>"):
    """What a competent backend says to each operator on Janet's ducks (answer 18)."""
    replies = {
        "Plan": "<plan>1. Eggs left: 16 - 3 - 4.\n2. Multiply by $2.</plan>",
        "Programmer": "```python\ndef solve():\n    left = 16 - 3 - 4\n    return left * 2\n```",
        "Custom": "She has 16 - 3 - 4 = 9 eggs and sells them for 9 * 2 = 18. <answer>$18</answer>",
        "ScEnsemble": "<choice>A</choice>",
        "Verify": verify,
        "Revise": "Fixed: <answer>18</answer>",
        "Format": "<answer>18</answer>",
    }
    return lambda request: replies[operator_of(request)]


def backend_for(server: LoopbackServer, **kwargs) -> OpenAIBackend:
    options = dict(max_retries=1, backoff_base_s=0.01, timeout_s=2.0, seed=0)
    options.update(kwargs)
    return OpenAIBackend(model="loopback", base_url=server.base_url, api_key_env=None, **options)


def reference_graph() -> WorkflowGraph:
    g = WorkflowGraph()
    g.add_operator("Plan")
    g.add_structure("parallel", ["Programmer", "Custom"])
    g.add_operator("ScEnsemble")
    g.add_structure("conditional", ["Verify", "Revise"])
    g.add_operator("Format")
    return g


FAULTS = {
    "http_500": Fault.http(500),
    "http_429": Fault.http(429, retry_after_s=0.01),
    "dropped_connection": Fault.drop(),
    "timeout": Fault.hang(1.0),
    "malformed_json": Fault.malformed(),
    "empty_content": Fault.empty(),
}


@pytest.mark.parametrize("kind", list(FAULTS))
def test_every_injected_fault_ends_as_a_recorded_error(kind):
    fault = FAULTS[kind]
    with LoopbackServer(replies=janet_replies(), faults=lambda i, r: fault) as server:
        executor = WorkflowExecutor(backend_for(server, timeout_s=0.3))
        result = asyncio.run(executor.execute(reference_graph(), gsm8k_task()))
    assert result.errors, kind
    assert all(r.error for r in result.trace if r.operator in ("Plan", "Programmer", "Custom"))
    assert result.errors[0].startswith("BackendError: ")
    assert result.answer is None
    expected = {
        "http_500": "HTTP 500",
        "http_429": "HTTP 429",
        "dropped_connection": "connection error",
        "timeout": "timeout",
        "malformed_json": "malformed response",
        "empty_content": "empty content",
    }[kind]
    assert expected in result.errors[0]


def test_a_transient_fault_is_retried_by_the_backend_and_the_run_succeeds():
    faults = [Fault.http(503), None, Fault.drop()]
    with LoopbackServer(replies=janet_replies(), faults=faults) as server:
        executor = WorkflowExecutor(backend_for(server))
        result = asyncio.run(executor.execute(reference_graph(), gsm8k_task()))
        requests = len(server.chat_requests)
    assert result.ok, result.errors
    assert result.answer == "18"
    assert requests == result.calls + 2  # two retried requests


def test_node_timeout_cuts_a_hanging_server_short():
    with LoopbackServer(replies=janet_replies(), faults=[Fault.hang(5.0)]) as server:
        executor = WorkflowExecutor(backend_for(server, timeout_s=10.0), node_timeout_s=0.3)
        g = WorkflowGraph()
        g.add_operator("Custom")
        g.add_operator("Format")
        result = asyncio.run(executor.execute(g, gsm8k_task()))
    assert result.trace[0].error.startswith("TimeoutError")
    assert result.seconds < 3.0
    assert result.trace[1].error.startswith("NoCandidate")


@pytest.mark.parametrize("verdict", ["PASS", "FAIL"])
def test_reference_workflow_end_to_end_on_the_loopback_server(verdict):
    task = gsm8k_task()
    verify = f"I get <answer>18</answer>. <verdict>{verdict}</verdict>"
    with LoopbackServer(replies=janet_replies(verify), latency_s=0.01) as server:
        executor = WorkflowExecutor(backend_for(server))
        result = asyncio.run(executor.execute(reference_graph(), task))
        asked = [operator_of(r.body) for r in server.chat_requests]
    assert result.ok, result.errors
    assert result.answer == "18"
    assert MathAnswerScorer()(task, result.answer) == 1.0
    expected = ["Plan", "Programmer", "Custom", "ScEnsemble", "Verify"]
    expected += ["Revise", "Format"] if verdict == "FAIL" else ["Format"]
    assert [r.operator for r in result.trace] == expected
    assert sorted(asked) == sorted(set(expected) - {"ScEnsemble"})  # a 2-0 vote needs no call
    assert result.calls == len(asked) and result.tokens > 0


def test_scripted_episode_runs_end_to_end_through_the_canvas():
    texts = [json.loads(line)["text"] for line in EPISODE.read_text().splitlines() if line.strip()]
    task = gsm8k_task()
    constraints = FinishConstraints(
        min_operators=5, require_checker=True, require_structure=True, require_format=True
    )
    with LoopbackServer(replies=janet_replies(), latency_s=0.005) as server:
        executor = WorkflowExecutor(backend_for(server))
        canvas = Canvas(task, executor=executor, finish_constraints=constraints)
        canvas.reset()

        async def play():
            return [await canvas.step(text) for text in texts]

        results = asyncio.run(play())
        requests = len(server.chat_requests)
    assert results[-1].done
    assert canvas.graph.to_dsl() == TARGET
    final = canvas.last_result
    assert final is not None and final.ok, final
    assert final.answer == "18"
    assert MathAnswerScorer()(task, final.answer) == 1.0
    assert "18" in results[-2].observation  # the feedback after the last edit shows the answer
    # The canvas re-executes after every edit, but the prefix cache makes each operator call the
    # backend once over the whole episode (the canvas runs nothing while prompts are awaited).
    assert requests == 5  # Plan, Programmer, Custom, Verify, Format; the 2-0 vote is free
    assert executor.cache_stats.hits > 0


def test_executor_sampling_settings_reach_every_request():
    with LoopbackServer(replies=janet_replies()) as server:
        executor = WorkflowExecutor(backend_for(server), temperature=0.2, max_tokens_per_call=333)
        result = asyncio.run(executor.execute(reference_graph(), gsm8k_task()))
        assert result.ok, result.errors
        bodies = [r.body for r in server.chat_requests]
        assert len(bodies) == result.calls > 0
        assert all(b["temperature"] == 0.2 and b["max_tokens"] == 333 for b in bodies)
