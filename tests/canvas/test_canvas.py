"""The canvas state machine: two-step adds, recoverability, finish, truncation, execution."""

from __future__ import annotations

import asyncio

from flowsteer.actions import parse_action
from flowsteer.canvas import Canvas, ExecutionResult, FinishConstraints


async def play(canvas, texts):
    return [await canvas.step(t) for t in texts]


ADD_PLAN = "<action>add</action><operator>Plan</operator>"
PROMPT = "<action>set_prompt</action><prompt>do it</prompt>"
DEFAULT = "<action>set_prompt</action><prompt></prompt>"


def test_reset_and_system_prompt(task):
    c = Canvas(task)
    obs = c.reset()
    assert "What is 6 * 7?" in obs and "turn 0/20" in obs
    sp = c.system_prompt()
    assert "- ScEnsemble [ensemble]" in sp and "<action>finish</action>" in sp


def test_add_asks_for_prompt_then_runs(task, executor, run):
    c = Canvas(task, executor)
    r1, r2 = run(play(c, [ADD_PLAN, PROMPT]))
    assert (r1.info.state, r1.info.awaiting, r1.info.executed) == ("awaiting_prompt", "n1", False)
    assert "Now send the prompt for n1 (Plan)" in r1.observation
    assert (r2.info.state, r2.info.executed, r2.info.valid) == ("building", True, True)
    assert c.graph.node("n1").prompt == "do it"
    assert executor.calls == ["Plan"]
    assert "answer: 42" in r2.observation


def test_structure_asks_one_prompt_per_child_in_order(task, run):
    c = Canvas(task)
    rs = run(play(c, [
        "<action>add</action><structure>parallel</structure><operators>Programmer, Custom</operators>",
        PROMPT, DEFAULT,
    ]))  # fmt: skip
    assert [r.info.awaiting for r in rs] == ["n2", "n3", None]
    assert "n3 (Custom, 2 of 2)" in rs[1].observation
    assert c.graph.node("n2").prompt == "do it" and c.graph.node("n3").prompt == ""
    assert "execution: skipped (no executor)" in rs[2].observation


def test_rejected_actions_leave_the_graph_exactly_as_it_was(task, run, invariants):
    c = Canvas(task)
    run(play(c, [ADD_PLAN, PROMPT]))
    before = c.graph.copy()
    bad = [
        "<action>add</action><operator>Plann</operator>",
        "<action>add</action><structure>parallel</structure><operators>Custom</operators>",
        "<action>add</action><operator>ScEnsemble</operator>",
        "<action>add</action><structure>loop</structure><operators>Review</operators><count>7</count>",
        "<action>add</action><structure>conditional</structure><condition>Custom</condition><on_fail>Revise</on_fail>",
        "<action>delete</action><target>n9</target>",
        "<action>modify</action><target>n1</target><count>2</count>",
        "<action>add</action><operator>Plan</operator><position>5</position>",
        "<action>set_prompt</action><prompt>x</prompt>",
        "garbage",
    ]  # fmt: skip
    for r in run(play(c, bad)):
        assert not r.info.valid and r.info.error and r.info.error_code
        assert "status: rejected" in r.observation
        assert c.graph == before  # ids and the id counter included
        invariants(c.graph)
    assert c.graph.next_id == "n2"


def test_awaiting_prompt_is_never_a_trap(task, run):
    c = Canvas(task)
    rs = run(play(c, [
        "<action>add</action><structure>parallel</structure><operators>Programmer, Custom</operators>",
        "<action>add</action><operator>Plann</operator>",
        "<action>finish</action>",
        "<action>set_prompt</action><target>n3</target><prompt>x</prompt>",
        "<action>delete</action><target>n1</target>",
    ]))  # fmt: skip
    assert [r.info.error_code for r in rs[1:4]] == ["wrong_state"] * 3
    assert "cancel the add with <action>delete</action><target>n1</target>" in rs[1].observation
    assert "waiting for the prompt of n2 (Programmer, 1 of 2)" in rs[3].observation
    assert rs[4].info.valid and c.state == "building" and len(c.graph) == 0


def test_targets_by_name_modify_and_loops(task, executor, run):
    c = Canvas(task, executor)
    rs = run(play(c, [
        ADD_PLAN, PROMPT,
        "<action>add</action><structure>loop</structure><operators>Review, Revise</operators><count>2</count>",
        DEFAULT, DEFAULT,
        "<action>modify</action><target>n2</target><count>3</count>",
        "<action>modify</action><target>plan</target><operator>Decompose</operator>",
        DEFAULT,
        "<action>set_prompt</action><target>n3</target><prompt>be harsh</prompt>",
        "<action>modify</action><target>n2</target><operators>Test, Revise</operators>",
        DEFAULT, DEFAULT,
    ]))  # fmt: skip
    assert all(r.info.valid for r in rs), [r.info.error for r in rs]
    assert rs[5].info.executed  # a count change needs no prompt
    assert c.graph.to_dsl() == "Decompose -> (Test -> Revise) * 3"
    assert c.graph.node("n1").name == "Decompose"  # modify keeps the id


def test_finish_constraints_say_why(task, run):
    fc = FinishConstraints(
        min_operators=3, require_checker=True, require_structure=True, require_format=True
    )
    c = Canvas(task, finish_constraints=fc)
    (r,) = run(play(c, ["<action>finish</action>"]))
    assert r.info.error_code == "finish_constraints" and not r.done
    for need in (
        "at least 3 operators (it has 0)",
        "a checker (Test, Review, Verify)",
        "a structure",
        "a Format",
    ):
        assert need in r.info.error
    c2 = Canvas(task)
    rs = run(play(c2, [ADD_PLAN, DEFAULT, "<action>finish</action>", "<action>finish</action>"]))
    assert rs[2].done and rs[2].info.state == "done" and "status: finished" in rs[2].observation
    assert rs[3].done and rs[3].info.error_code == "over"


def test_max_turns_truncates(task, run):
    c = Canvas(task, max_turns=3)
    rs = run(play(c, ["x", "y", "z", "w"]))
    assert [r.done for r in rs] == [False, False, True, True]
    assert rs[2].info.truncated and "status: truncated" in rs[2].observation
    assert c.turn == 3


def test_executor_failures_become_feedback(task, scripted_executor_cls, run):
    ex = scripted_executor_cls([RuntimeError("backend down")])
    c = Canvas(task, ex)
    r = run(play(c, [ADD_PLAN, DEFAULT]))[-1]
    assert r.info.valid and "errors: RuntimeError: backend down" in r.observation

    class Slow:
        async def execute(self, graph, task):
            await asyncio.sleep(5)

    c = Canvas(task, Slow(), execution_timeout_s=0.01)
    r = run(play(c, [ADD_PLAN, DEFAULT]))[-1]
    assert "TimeoutError" in r.observation and "suggestion: the run timed out" in r.observation
    ex = scripted_executor_cls([ExecutionResult(answer="")])
    r = run(play(Canvas(task, ex), [ADD_PLAN, DEFAULT]))[-1]
    assert "suggestion: the workflow gave no answer" in r.observation


def test_step_accepts_a_pre_parsed_action(task, run):
    c = Canvas(task)
    r = run(c.step(parse_action(ADD_PLAN)))
    assert r.info.valid and c.graph.to_dsl() == "Plan"


def test_ignored_actions_are_reported(task, run):
    c = Canvas(task)
    r = run(c.step(ADD_PLAN + "<action>finish</action>"))
    assert (
        r.info.ignored_actions == 1
        and "1 more action(s) in your message were ignored" in r.observation
    )


def test_finish_on_the_last_turn_is_finished_not_truncated(task, run):
    c = Canvas(task, max_turns=3)
    rs = run(play(c, [ADD_PLAN, DEFAULT, "<action>finish</action>"]))
    assert rs[-1].done and not rs[-1].info.truncated and not c.truncated
    assert "status: finished" in rs[-1].observation and "turn limit" not in rs[-1].observation


def test_min_operators_is_a_lower_bound_that_is_met_exactly(task, run):
    c = Canvas(task, finish_constraints=FinishConstraints(min_operators=2))
    rs = run(play(c, [ADD_PLAN, DEFAULT, "<action>finish</action>"]))
    assert rs[-1].info.error_code == "finish_constraints"
    assert "at least 2 operators (it has 1)" in rs[-1].info.error
    rs = run(
        play(
            c,
            ["<action>add</action><operator>Custom</operator>", DEFAULT, "<action>finish</action>"],
        )
    )
    assert rs[-1].info.valid and rs[-1].done


def test_a_name_that_matches_several_nodes_is_not_a_target(task, run):
    c = Canvas(task)
    run(play(c, [ADD_PLAN, DEFAULT, ADD_PLAN, DEFAULT]))
    before = c.graph.copy()
    (r,) = run(play(c, ["<action>delete</action><target>Plan</target>"]))
    assert r.info.error_code == "invalid_edit" and "'Plan' names 2 nodes (n1, n2)" in r.info.error
    assert c.graph == before


def test_finish_shows_the_last_run_without_running_again(task, executor, run):
    c = Canvas(task, executor)
    rs = run(play(c, [ADD_PLAN, DEFAULT, "<action>finish</action>"]))
    assert rs[1].info.executed and rs[1].info.result is not None
    assert not rs[2].info.executed and rs[2].info.result is rs[1].info.result
    assert executor.calls == ["Plan"] and "answer: 42" in rs[2].observation


def test_modify_edits_conditional_branches_and_reports_extra_problems(task, run):
    c = Canvas(task)
    rs = run(play(c, [
        "<action>add</action><structure>conditional</structure><condition>Verify</condition>"
        "<on_fail>Revise</on_fail><on_pass>Custom</on_pass>",
        DEFAULT, DEFAULT, DEFAULT,
        "<action>modify</action><target>n1</target><on_pass>done</on_pass>",
        "<action>add</action><structure>parallel</structure><operators>ScEnsemble</operators>",
    ]))  # fmt: skip
    assert rs[4].info.valid and c.graph.to_dsl() == "Verify ? Revise : done"
    assert "parallel n5 has 1 operator(s)" in rs[5].info.error
    assert rs[5].info.error.endswith("(and 1 more problem(s))")


def test_a_prompt_given_with_add_is_ignored_and_the_policy_is_told(task, run):
    c = Canvas(task)
    (r,) = run(play(c, ["<action>add</action><operator>Plan</operator><prompt>x</prompt>"]))
    assert "the <prompt> given with add was ignored" in r.observation
    assert c.graph.node("n1").prompt == "" and c.awaiting == "n1"


def test_an_executor_that_returns_the_wrong_type_becomes_an_error(task, run):
    class Wrong:
        async def execute(self, graph, task):
            return "42"

    r = run(play(Canvas(task, Wrong()), [ADD_PLAN, DEFAULT]))[-1]
    assert r.info.valid and r.info.result is not None
    assert r.info.result.errors == ["TypeError: executor returned str, not ExecutionResult"]
