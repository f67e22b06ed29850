"""A bare reply is the awaited prompt (issue 8.14); size caps keep observations bounded (8.15)."""

from __future__ import annotations

import pytest

from flowsteer.canvas import Canvas

ADD_PLAN = "<action>add</action><operator>Plan</operator>"
ADD_PAR = (
    "<action>add</action><structure>parallel</structure><operators>Programmer, Custom</operators>"
)


async def play(canvas, texts):
    return [await canvas.step(t) for t in texts]


@pytest.mark.parametrize(
    ("reply", "prompt"),
    [
        ("Solve it with sympy.", "Solve it with sympy."),
        ("  List the quantities.\n", "List the quantities."),
        ("<prompt>Use units.</prompt>", "Use units."),
        ("< Prompt >Use units.</prompt>", "Use units."),
        ("<think>I want a plan that names the unknown</think>Name the unknown.", "Name the unknown."),
        ("thinking about it</think>\nName the unknown.", "Name the unknown."),
        ("Write code like ```python\nprint(1)\n``` and print it.", "Write code like ```python\nprint(1)\n``` and print it."),
        ("<prompt></prompt>", ""),
    ],
)  # fmt: skip
def test_a_reply_without_an_action_tag_is_the_awaited_prompt(task, executor, run, reply, prompt):
    c = Canvas(task, executor)
    _, r = run(play(c, [ADD_PLAN, reply]))
    assert r.info.valid and r.info.action_type == "set_prompt", r.observation
    assert c.graph.node("n1").prompt == prompt
    assert "think" not in c.graph.node("n1").prompt
    assert r.info.executed and c.state == "building"


def test_bare_prompts_fill_a_structure_in_order(task, run):
    c = Canvas(task)
    rs = run(play(c, [ADD_PAR, "first prompt", "<prompt>second</prompt>"]))
    assert [r.info.awaiting for r in rs] == ["n2", "n3", None]
    assert [c.graph.node(n).prompt for n in ("n2", "n3")] == ["first prompt", "second"]


@pytest.mark.parametrize("reply", ["", "   \n\t", "<think>only thinking</think>"])
def test_an_empty_reply_is_not_a_prompt(task, run, reply):
    c = Canvas(task)
    _, r = run(play(c, [ADD_PLAN, reply]))
    assert not r.info.valid and c.awaiting == "n1"
    assert "Now send" not in r.observation or "n1" in r.observation


@pytest.mark.parametrize(
    "reply",
    [
        "<action>add</action><operator>Custom</operator>",  # an action tag is still an action
        "<operator>Custom</operator>",  # another tag without <action>: a broken action
        "```\n<action>finish</action>\n```",  # a fenced action
    ],
)
def test_action_tags_still_mean_actions_while_awaiting(task, run, reply):
    c = Canvas(task)
    _, r = run(play(c, [ADD_PLAN, reply]))
    assert not r.info.valid and c.awaiting == "n1" and c.graph.node("n1").prompt == ""


def test_delete_is_still_accepted_while_awaiting(task, run):
    c = Canvas(task)
    _, r = run(play(c, [ADD_PLAN, "<action>delete</action><target>n1</target>"]))
    assert r.info.valid and c.graph.to_dsl() == "(empty)"


def test_plain_text_outside_a_prompt_request_is_still_rejected(task, run):
    c = Canvas(task)
    (r,) = run(play(c, ["Solve it with sympy."]))
    assert not r.info.valid and r.info.error_code == "no_action"


# ---------------------------------------------------------------------------- limits
def test_a_structure_wider_than_the_cap_is_rejected_with_the_limit(task, run):
    c = Canvas(task, max_children=8)
    ops = ", ".join(["Custom"] * 9)
    (r,) = run(
        play(
            c, [f"<action>add</action><structure>parallel</structure><operators>{ops}</operators>"]
        )
    )
    assert r.info.error_code == "too_wide" and "at most 8 operators, got 9" in r.info.error
    assert c.graph.to_dsl() == "(empty)"
    ok = ", ".join(["Custom"] * 8)
    (r,) = run(
        play(c, [f"<action>add</action><structure>parallel</structure><operators>{ok}</operators>"])
    )
    assert r.info.valid and len(c.graph) == 9


def test_modify_cannot_widen_past_the_cap(task, run):
    c = Canvas(task, max_children=4, max_nodes=20)
    run(play(c, [ADD_PAR, "<prompt></prompt>", "<prompt></prompt>"]))
    ops = ", ".join(["Custom"] * 5)
    (r,) = run(play(c, [f"<action>modify</action><target>n1</target><operators>{ops}</operators>"]))
    assert r.info.error_code == "too_wide" and c.graph.to_dsl() == "[Programmer, Custom]"


def test_a_workflow_larger_than_the_cap_is_rejected_with_the_limit(task, run):
    c = Canvas(task, max_nodes=5, max_children=3, max_turns=50)
    for _ in range(5):
        run(play(c, [ADD_PLAN, "<prompt></prompt>"]))
    (r,) = run(play(c, [ADD_PLAN]))
    assert r.info.error_code == "too_large" and "at most 5" in r.info.error
    assert len(c.graph) == 5


def test_bad_limits_are_refused(task):
    with pytest.raises(ValueError, match="max_children"):
        Canvas(task, max_children=2)
    with pytest.raises(ValueError, match="max_nodes"):
        Canvas(task, max_nodes=5, max_children=8)


def test_observations_stay_bounded_whatever_the_policy_writes(task, scripted_executor_cls, run):
    from flowsteer.canvas import ExecutionResult, NodeRecord

    huge = "x" * 20_000
    trace = [NodeRecord(f"n{i}", "Verify", huge, passed=False) for i in range(300)]
    executor = scripted_executor_cls(
        [ExecutionResult(answer=huge, trace=trace, errors=[huge] * 300, calls=1, tokens=1)]
    )
    c = Canvas(task, executor, max_turns=400)
    long_name = "Q" * 100_000
    adversarial = [
        ADD_PLAN,
        "P" * 1_000_000,  # a huge prompt
        f"<action>add</action><operator>{long_name}</operator>",  # a long unknown name
        f"<action>delete</action><target>{long_name}</target>",
        "<action>add</action><structure>parallel</structure><operators>"
        + ", ".join(["Custom"] * 50_000)
        + "</operators>",  # a very wide structure
        "<action>add</action><structure>loop</structure><operators>Review, Revise</operators>"
        "<count>999999999</count>",
        "<action>add</action>" * 10_000,
        f"<action>{long_name}</action>",
        "<think>" + huge + "</think><action>finish</action>",
    ]
    for _ in range(60):  # many nodes
        adversarial += [
            "<action>add</action><structure>parallel</structure>"
            "<operators>Programmer, Custom, Custom</operators>",
            huge,
            huge,
            huge,
        ]
    sizes = [len(r.observation) for r in run(play(c, adversarial))]
    assert len(c.graph) <= c.max_nodes
    assert max(sizes) < 6000, max(sizes)
