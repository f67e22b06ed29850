"""Reliability: parse_action and Canvas.step never raise, and graph invariants hold after every
step, for arbitrary text, the fuzz corpus, and random sequences of valid actions."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from flowsteer.actions import Action, ParseError, format_action, parse_action
from flowsteer.canvas import Canvas

FUZZ = sorted((Path(__file__).parent / "fuzz").glob("*.txt"))
OPS = ["Plan", "Decompose", "Programmer", "Custom", "AnswerGenerate", "Test", "Review", "Verify",
       "Revise", "ScEnsemble", "Aggregate", "Format", "Plann", "parallel"]  # fmt: skip
SETTINGS = settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


def drive(coro):
    """The scripted executor never suspends, so a step completes in one send()."""
    try:
        coro.send(None)
    except StopIteration as stop:
        return stop.value
    raise AssertionError("step suspended")


def play(canvas, texts, invariants):
    canvas.reset()
    for text in texts:
        before = canvas.graph.copy()
        r = drive(canvas.step(text))
        assert isinstance(r.observation, str) and r.observation
        assert r.info.turn <= canvas.max_turns
        if not r.info.valid:
            assert canvas.graph == before, "a rejected action changed the graph"
        invariants(canvas.graph)


@pytest.mark.parametrize("path", FUZZ, ids=[p.stem for p in FUZZ])
def test_fuzz_corpus(path, task, executor, invariants):
    text = path.read_text(encoding="utf-8")
    assert isinstance(parse_action(text), (Action, ParseError))
    canvas = Canvas(task, executor)
    setup = ["<action>add</action><structure>parallel</structure><operators>Custom, Programmer</operators>",
             "<action>set_prompt</action><prompt></prompt>"] * 2  # fmt: skip
    play(canvas, [*setup, text, text], invariants)


_fields = st.builds(
    Action,
    type=st.sampled_from(["add", "delete", "modify", "set_prompt", "finish"]),
    operator=st.one_of(st.none(), st.sampled_from(OPS)),
    structure=st.one_of(st.none(), st.sampled_from(["parallel", "conditional", "loop"])),
    operators=st.lists(st.sampled_from(OPS), max_size=4).map(tuple),
    condition=st.one_of(st.none(), st.sampled_from(OPS)),
    on_fail=st.one_of(st.none(), st.sampled_from(OPS)),
    on_pass=st.one_of(st.none(), st.sampled_from([*OPS, "done"])),
    count=st.one_of(st.none(), st.integers(0, 7)),
    position=st.one_of(st.none(), st.integers(1, 8)),
    target=st.one_of(st.none(), st.integers(1, 15).map(lambda i: f"n{i}"), st.sampled_from(OPS)),
    prompt=st.one_of(st.none(), st.text(max_size=20)),
)
_op = st.sampled_from(OPS[:12])
_target = st.integers(1, 15).map(lambda i: f"n{i}")
_valid = st.one_of(  # well-formed actions; many still fail canvas checks (ids, ensembles, ...)
    st.builds(Action, type=st.just("add"), operator=_op, position=st.one_of(st.none(), st.integers(1, 4))),
    st.builds(Action, type=st.just("add"), structure=st.just("parallel"),
              operators=st.lists(_op, min_size=2, max_size=3).map(tuple)),
    st.builds(Action, type=st.just("add"), structure=st.just("conditional"),
              condition=st.sampled_from(["Test", "Review", "Verify"]), on_fail=_op,
              on_pass=st.sampled_from(["done", "Format"])),
    st.builds(Action, type=st.just("add"), structure=st.just("loop"),
              operators=st.lists(_op, min_size=1, max_size=3).map(tuple), count=st.integers(1, 5)),
    st.builds(Action, type=st.just("delete"), target=_target),
    st.builds(Action, type=st.just("modify"), target=_target, operator=_op),
    st.builds(Action, type=st.just("modify"), target=_target, count=st.integers(1, 5)),
    st.builds(Action, type=st.just("set_prompt"), target=_target, prompt=st.text(max_size=10)),
    st.builds(Action, type=st.just("finish")),
)  # fmt: skip
_texts = st.one_of(
    _fields.map(format_action),
    _valid.map(format_action),
    st.text(max_size=200),
    st.binary(max_size=200),
    st.lists(
        st.sampled_from(
            [
                "<action>",
                "</action>",
                "add",
                "<operator>",
                "Plan",
                "</operator>",
                "<prompt>",
                "</prompt>",
                "```",
                "<think>",
                "</think>",
                "<",
            ]
        ),
        max_size=30,
    ).map("".join),
)


@SETTINGS
@given(texts=st.lists(_texts, max_size=25))
def test_canvas_step_never_raises_and_keeps_invariants(texts, task, executor, invariants):
    play(Canvas(task, executor, max_turns=30), texts, invariants)


@SETTINGS
@given(texts=st.lists(_valid.map(format_action), min_size=5, max_size=40))
def test_random_action_sequences_keep_invariants(texts, task, executor, invariants):
    # Interleave prompts so adds complete and the graph grows.
    mixed = [t for text in texts for t in (text, "<action>set_prompt</action><prompt></prompt>")]
    play(Canvas(task, executor, max_turns=100), mixed, invariants)


def test_thousands_of_actions_in_one_message(task, executor, invariants):
    text = "<action>add</action><operator>Plan</operator>" * 5000
    canvas = Canvas(task, executor)
    r = drive(canvas.step(text))
    assert r.info.valid and r.info.ignored_actions == 4999
    invariants(canvas.graph)


def test_huge_and_binary_messages(task, executor, invariants):
    canvas = Canvas(task, executor)
    for text in ["x" * 2_000_000, bytes(range(256)) * 100, "<prompt>" * 100_000, "\ud800"]:
        r = drive(canvas.step(text))
        assert not r.info.valid
        invariants(canvas.graph)
