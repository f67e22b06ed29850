"""The action grammar: round trips, tolerance, precise errors, and totality on hostile input."""

from __future__ import annotations

import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from flowsteer.actions import GRAMMAR_EXAMPLES, Action, ParseError, format_action, parse_action


@pytest.mark.parametrize(("desc", "action"), GRAMMAR_EXAMPLES, ids=[d for d, _ in GRAMMAR_EXAMPLES])
def test_every_prompt_example_parses_back_to_itself(desc, action):
    assert parse_action(format_action(action)) == action


def test_case_whitespace_and_spelling_tolerance():
    text = "< ACTION > Set-Prompt </action>\n< Prompt >  be brief  </ PROMPT >"
    assert parse_action(text) == Action("set_prompt", prompt="be brief")
    a = parse_action(
        "<action>add</action><structure>Conditional</structure><condition>Verify</condition>"
        "<on-fail>Revise</on-fail><onPass>done</onPass>"
    )
    assert (a.structure, a.condition, a.on_fail, a.on_pass) == (
        "conditional",
        "Verify",
        "Revise",
        "done",
    )


def test_think_is_removed_and_kept_apart():
    a = parse_action("<think>maybe <action>delete</action></think><action>finish</action>")
    assert a == Action("finish", think="maybe <action>delete</action>")
    # Chat templates that open the think block in the prompt: the text starts inside it.
    assert parse_action("I should stop.</think>\n<action>finish</action>").think == "I should stop."
    # An unclosed think block ends at the action.
    assert parse_action("<think>hmm <action>finish</action>").type == "finish"


def test_one_action_per_turn_first_wins_rest_counted():
    a = parse_action(
        "<action>add</action><operator>Plan</operator>" * 3 + "<action>finish</action>"
    )
    assert (a.type, a.operator, a.ignored) == ("add", "Plan", 3)


def test_fields_may_precede_the_action_tag_and_prompts_are_opaque():
    a = parse_action("<operator>Plan</operator><action>add</action>")
    assert a == Action("add", operator="Plan")
    a = parse_action(
        "<action>set_prompt</action><prompt>Use <b>tags</b> <action>x</action></prompt>"
    )
    assert (a.prompt, a.ignored) == ("Use <b>tags</b> <action>x</action>", 0)


def test_action_in_code_fence_is_not_an_action():
    err = parse_action("Here:\n```xml\n<action>finish</action>\n```")
    assert isinstance(err, ParseError) and err.code == "fenced_action"
    assert parse_action("```\nnoise\n```\n<action>finish</action>") == Action("finish")


def test_targets_positions_and_structures_as_operator():
    assert parse_action("<action>delete</action><target> 3 </target>").target == "n3"
    assert parse_action("<action>delete</action><target>N12</target>").target == "n12"
    assert parse_action("<action>delete</action><target>Revise</target>").target == "Revise"
    a = parse_action("<action>add</action><operator>Plan</operator><position>start</position>")
    assert a.position == 1
    a = parse_action(
        "<action>add</action><operator>parallel</operator><operators>[A, B]</operators>"
    )
    assert (a.structure, a.operators) == ("parallel", ("A", "B"))


@pytest.mark.parametrize(
    ("text", "code", "needle"),
    [
        ("", "empty", "empty"),
        ("just prose", "no_action", "<action>add</action><operator>Plan</operator>"),
        ("<action>add</action>", "missing_field", "<operator> tag missing after <action>add</action>"),
        ("<action>ad</action>", "unknown_action", "did you mean add?"),
        ("<action>add</action><operator>Plan", "unclosed_tag", "<operator> is never closed"),
        ("<action>add</action><operator>Plan, Custom</operator>", "bad_value", "structure"),
        ("<action>add</action><structure>tree</structure>", "bad_value", "unknown structure"),
        ("<action>add</action><structure>loop</structure><operators>Review</operators>", "missing_field", "<count>"),
        ("<action>add</action><structure>conditional</structure><condition>Verify</condition>", "missing_field", "<on_fail>"),
        ("<action>delete</action>", "missing_field", "<target>n2</target>"),
        ("<action>modify</action><target>n1</target>", "missing_field", "modify needs"),
        ("<action>set_prompt</action>", "missing_field", "<prompt> tag missing"),
        ("<action>add</action><operator>Plan</operator><position>0</position>", "bad_value", "from 1"),
        ("<action>add</action><structure>loop</structure><operators>A</operators><count>x</count>", "bad_value", "whole number"),
        ("<prompt>hi</prompt>", "no_action", "no <action> tag"),
    ],
)  # fmt: skip
def test_errors_are_precise_and_actionable(text, code, needle):
    err = parse_action(text)
    assert isinstance(err, ParseError)
    assert err.code == code
    assert needle in err.message


def test_non_text_inputs():
    assert parse_action(b"<action>finish</action>") == Action("finish")
    assert parse_action(b"\xff\xfe<action>finish</action>") == Action("finish")
    assert isinstance(parse_action(None), ParseError)
    assert isinstance(parse_action(12), ParseError)


@pytest.mark.parametrize(
    "text",
    [
        "<" + " " * 200_000,
        "<action>" * 50_000,
        "<think>" * 50_000 + "<action>finish</action>",
        "```" * 50_000,
        "<operator>" * 50_000,
        "<action>add</action><operator>Plan</operator>" * 20_000,
        "<action>set_prompt</action><prompt>" + "x" * 1_000_000,
        "< /" * 100_000,
    ],
    ids=[
        "spaces",
        "actions",
        "thinks",
        "fences",
        "opens",
        "many-actions",
        "huge-prompt",
        "slashes",
    ],
)
def test_pathological_inputs_are_linear(text):
    t0 = time.perf_counter()
    result = parse_action(text)
    assert isinstance(result, (Action, ParseError))
    # A generous bound: a quadratic parse of these 0.3-1 MB inputs takes minutes; a linear one
    # takes milliseconds, even on a loaded 2-core CI machine (0.5 s flaked there).
    assert time.perf_counter() - t0 < 5.0


_tagish = st.lists(
    st.sampled_from(
        ["<action>", "</action>", "<operator>", "</operator>", "<think>", "</think>", "```",
         "<prompt>", "</prompt>", "<operators>", "<target>", "add", "finish", "set_prompt",
         "Plan", "n1", ", ", "<", ">", "/", " ", "\n", "<structure>", "loop", "<count>", "3"]
    ),
    max_size=40,
).map("".join)  # fmt: skip


@settings(max_examples=300, deadline=None)
@given(st.one_of(st.text(), st.binary(), _tagish))
def test_parse_action_is_total(text):
    result = parse_action(text)
    assert isinstance(result, (Action, ParseError))
    if isinstance(result, ParseError):
        assert result.message


@settings(max_examples=200, deadline=None)
@given(_tagish)
def test_formatting_a_parsed_action_is_a_fixed_point(text):
    a = parse_action(text)
    if isinstance(a, Action):
        again = parse_action(format_action(a))
        assert isinstance(again, Action)
        assert format_action(again) == format_action(a)


def test_position_end_appends_and_conditional_operators_list_carries_on_pass():
    for spelling in ("end", "Last"):
        a = parse_action(
            f"<action>add</action><operator>Plan</operator><position>{spelling}</position>"
        )
        assert a == Action("add", operator="Plan")  # position None: append
    a = parse_action(
        "<action>add</action><structure>conditional</structure>"
        "<operators>Verify, Revise, Custom</operators>"
    )
    assert (a.condition, a.on_fail, a.on_pass, a.operators) == ("Verify", "Revise", "Custom", ())
    a = parse_action(
        "<action>add</action><structure>conditional</structure><operators>Test, Revise</operators>"
    )
    assert (a.condition, a.on_fail, a.on_pass) == ("Test", "Revise", None)


def test_operator_lists_accept_dsl_arrows():
    a = parse_action(
        "<action>add</action><structure>loop</structure><operators>Review -> Revise</operators>"
        "<count>2</count>"
    )
    assert (a.operators, a.count) == (("Review", "Revise"), 2)
