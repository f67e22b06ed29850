"""`Canvas.final_result`: the answer scored is the output of the final graph itself (issue 8.1)."""

from __future__ import annotations

from flowsteer.canvas import Canvas, ExecutionResult
from flowsteer.director import FlowDirector
from flowsteer.llm.scripted import ScriptedBackend

ADD_PLAN = "<action>add</action><operator>Plan</operator>"
ADD_CUSTOM = "<action>add</action><operator>Custom</operator>"
PROMPT = "<action>set_prompt</action><prompt>do it</prompt>"


class DslExecutor:
    """Answers with the DSL of the graph it ran, so a stale answer is visible."""

    def __init__(self) -> None:
        self.calls: list[str] = []

    async def execute(self, graph, task) -> ExecutionResult:
        self.calls.append(graph.to_dsl())
        prompts = ",".join(n.prompt or "-" for n in graph.operator_nodes())
        return ExecutionResult(answer=f"{graph.to_dsl()} [{prompts}]")


async def play(canvas, texts):
    for t in texts:
        await canvas.step(t)


def test_structure_added_on_the_last_turn_runs_with_default_prompts(task, run):
    ex = DslExecutor()
    c = Canvas(task, ex, max_turns=3)
    run(play(c, [ADD_PLAN, PROMPT, ADD_CUSTOM]))  # Custom still awaits its prompt at the limit
    assert c.done and c.truncated and c.awaiting == "n2"
    assert c.last_result.answer == "Plan [do it]"  # the stale run of the older graph
    result = run(c.final_result())
    assert result.answer == "Plan -> Custom [do it,-]"  # the awaited prompt: the default
    assert ex.calls == ["Plan", "Plan -> Custom"]
    assert run(c.final_result()) is result and len(ex.calls) == 2  # not run twice


def test_deleting_every_node_leaves_no_answer(task, run):
    ex = DslExecutor()
    c = Canvas(task, ex)
    run(play(c, [ADD_PLAN, PROMPT, "<action>delete</action><target>n1</target>"]))
    assert c.last_result is not None  # the old run is still there ...
    assert run(c.final_result()) is None  # ... but the empty final graph has no answer


def test_a_graph_that_already_ran_is_not_run_again(task, run):
    ex = DslExecutor()
    c = Canvas(task, ex)
    run(play(c, [ADD_PLAN, PROMPT, "<action>finish</action>"]))
    assert run(c.final_result()).answer == "Plan [do it]"
    assert ex.calls == ["Plan"]


def test_without_an_executor_there_is_no_answer(task, run):
    c = Canvas(task)
    run(play(c, [ADD_PLAN, PROMPT]))
    assert run(c.final_result()) is None


def test_reset_forgets_the_previous_episode(task, run):
    ex = DslExecutor()
    c = Canvas(task, ex)
    run(play(c, [ADD_PLAN, PROMPT]))
    c.reset()
    run(play(c, [ADD_PLAN, PROMPT]))  # the same DSL, a new episode: its own run
    assert run(c.final_result()).answer == "Plan [do it]"
    assert ex.calls == ["Plan", "Plan"]


def test_the_director_scores_the_final_graph_not_the_last_run(task, run):
    ex = DslExecutor()
    policy = ScriptedBackend([ADD_PLAN, PROMPT, ADD_CUSTOM])
    episode = run(FlowDirector(policy, executor=ex, max_turns=3).run(task))
    assert episode.truncated
    assert episode.answer == "Plan -> Custom [do it,-]"
    assert episode.result is not None and episode.result.answer == episode.answer
