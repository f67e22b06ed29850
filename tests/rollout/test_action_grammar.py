"""`ActionGrammar`: every text the grammar admits is an action the canvas accepts, in both canvas
states, for the default and a plug-in library; sampled turns under it (tiny policy, `HFEngine`)
are all accepted; the grammar fits the token budget; it is off unless asked for."""

from __future__ import annotations

import asyncio
import copy
import random
from pathlib import Path

import pytest
import xgrammar
from transformers import AutoModelForCausalLM, AutoTokenizer

from flowsteer.actions import Action, format_action
from flowsteer.canvas import Canvas
from flowsteer.canvas.finish import FinishConstraints
from flowsteer.operators.library import OperatorLibrary
from flowsteer.rewards import WorkflowReward
from flowsteer.rollout import HFEngine, RolloutRunner, SamplingParams
from flowsteer.rollout.action_grammar import ActionConstraint, ActionGrammar
from flowsteer.tasks import Task

PLUGIN = Path(__file__).parents[1] / "data" / "plugin_library.yaml"
TASK = Task("toy/0", "toy", "math", "What is 2 + 2?", "4")


@pytest.fixture(params=["default", "plugin"], scope="module")
def library(request) -> OperatorLibrary:
    return OperatorLibrary.default() if request.param == "default" else OperatorLibrary.load(PLUGIN)


@pytest.fixture(scope="module")
def compiler(tiny_tokenizer):
    return xgrammar.GrammarCompiler(xgrammar.TokenizerInfo.from_huggingface(tiny_tokenizer))


def admits(compiler, constraint: ActionConstraint, text: str) -> bool:
    matcher = xgrammar.GrammarMatcher(compiler.compile_grammar(constraint.ebnf))
    return matcher.accept_string(text) and matcher.is_completed()


def candidates(canvas: Canvas, rng: random.Random) -> list[str]:
    """Valid and invalid actions of every kind for the canvas's current graph."""
    names = [*canvas.library.names, "Nope"]
    steps = len(canvas.graph.sequence)
    ids = [n.id for n in canvas.graph.walk()] + ["n99"]
    acts = [Action("finish")]
    for name in names:
        for pos in [None, *range(1, steps + 3)]:
            acts.append(Action("add", operator=name, position=pos))
    for _ in range(60):
        ops = tuple(rng.sample(names, rng.randint(1, 3)))
        pos = rng.choice([None, *range(1, steps + 3)])
        acts.append(Action("add", structure="parallel", operators=ops, position=pos))
        acts.append(Action("add", structure="loop", operators=ops, count=rng.randint(0, 6)))
        on_pass = rng.choice(["done", *names])
        acts.append(
            Action(
                "add",
                structure="conditional",
                condition=rng.choice(names),
                on_fail=rng.choice(names),
                on_pass=on_pass,
                position=pos,
            )
        )
    for nid in ids:
        acts.append(Action("delete", target=nid))
        acts.append(Action("set_prompt", target=nid, prompt="Be brief."))
        acts.append(Action("modify", target=nid, count=rng.randint(0, 6)))
        for name in names:
            acts.append(Action("modify", target=nid, operator=name))
    texts = [format_action(a) for a in acts]
    texts += ["Solve it carefully.", "<prompt></prompt>", "<prompt>Use sympy.</prompt>", ""]
    texts += ["<think>plan first</think>\n" + t for t in texts[:5]]
    return texts


def test_admitted_texts_are_exactly_accepted_actions_on_a_random_walk(library, compiler):
    """A random walk over canvas states: every candidate the grammar admits is accepted by a
    copy of the canvas; each action kind is admitted somewhere; the walk advances by a
    random admitted action."""
    grammar = ActionGrammar(max_think_chars=32, max_prompt_chars=32)
    rng = random.Random(0)
    seen_states, seen_kinds = set(), set()
    for _ in range(3):
        canvas = Canvas(TASK, library=library, max_turns=200, max_nodes=12, max_children=4)
        for _ in range(25):
            constraint = grammar.for_canvas(canvas, 256)
            seen_states.add(canvas.state)
            admitted = [t for t in candidates(canvas, rng) if admits(compiler, constraint, t)]
            assert admitted, f"nothing admitted in state {canvas.state}: {canvas.graph.to_dsl()}"
            for text in rng.sample(admitted, min(len(admitted), 25)):
                trial = copy.deepcopy(canvas, {id(canvas.library): canvas.library})
                info = asyncio.run(trial.step(text)).info
                assert info.valid, f"{text!r} on {canvas.graph.to_dsl()}: {info.error}"
                seen_kinds.add(info.action_type)
            asyncio.run(canvas.step(rng.choice(admitted)))
            if canvas.done:
                break
    assert seen_states == {"building", "awaiting_prompt"}
    assert seen_kinds == {"add", "delete", "modify", "set_prompt", "finish"}


def test_unknown_names_and_rules_are_not_admitted(compiler):
    grammar = ActionGrammar()
    canvas = Canvas(TASK)
    empty = grammar.for_canvas(canvas, 512)
    assert admits(compiler, empty, "<action>add</action><operator>Plan</operator>")
    assert not admits(compiler, empty, "<action>add</action><operator>Nope</operator>")
    assert not admits(compiler, empty, "<action>add</action><operator>ScEnsemble</operator>")
    assert not admits(compiler, empty, "<action>finish</action>")  # constraints unmet
    assert not admits(compiler, empty, "<action>delete</action><target>n1</target>")
    asyncio.run(canvas.step("<action>add</action><operator>Plan</operator>"))
    awaiting = grammar.for_canvas(canvas, 512)
    assert awaiting.state == "awaiting_prompt"
    assert admits(compiler, awaiting, "List the numbers.")
    assert not admits(compiler, awaiting, "<action>add</action><operator>Plan</operator>")
    assert not admits(compiler, awaiting, "use ```code```")  # no fences in free text


@pytest.mark.parametrize("max_tokens", [24, 48, 96, 300, 2000])
def test_every_admitted_text_fits_the_token_budget(max_tokens):
    """Even the longest admitted text, one byte per token, leaves a slot for the end of turn."""
    grammar = ActionGrammar()
    canvas = Canvas(TASK, finish_constraints=FinishConstraints(min_operators=0))
    asyncio.run(canvas.step("<action>add</action><structure>parallel</structure>"
                            "<operators>Programmer, Custom</operators>"))  # fmt: skip
    for _ in range(3):
        asyncio.run(canvas.step("Solve it."))
    for state_canvas in (canvas, Canvas(TASK)):
        constraint = grammar.for_canvas(state_canvas, max_tokens)
        if "<action>finish</action>" in constraint.ebnf or max_tokens >= 48:
            assert constraint.max_bytes <= max_tokens - 1
    assert grammar.for_canvas(canvas, 2000).max_bytes > grammar.for_canvas(canvas, 96).max_bytes


def test_grammar_is_cached_per_state_and_budget():
    grammar = ActionGrammar()
    canvas = Canvas(TASK)
    assert grammar.for_canvas(canvas, 100) is grammar.for_canvas(canvas, 100)
    assert grammar.for_canvas(canvas, 100) is not grammar.for_canvas(canvas, 101)
    other = Canvas(TASK, library=OperatorLibrary.load(PLUGIN))
    assert "Sketch" in grammar.for_canvas(other, 100).ebnf
    assert "Plan" not in grammar.for_canvas(other, 100).ebnf


class _Recording(ActionGrammar):
    """An `ActionGrammar` that records the canvas state of every constraint it hands out."""

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.states: list[str] = []

    def for_canvas(self, canvas, max_tokens):
        self.states.append(canvas.state)
        return super().for_canvas(canvas, max_tokens)


@pytest.fixture(scope="module")
def hf_policy(tiny_dir):
    return AutoModelForCausalLM.from_pretrained(tiny_dir), AutoTokenizer.from_pretrained(tiny_dir)


@pytest.mark.parametrize("seed", [0, pytest.param(1, marks=pytest.mark.slow)])
def test_every_sampled_turn_is_accepted(library, hf_policy, seed):
    """The untrained tiny policy under the grammar: no rejected turn, no turn cut at its budget,
    in both canvas states, whatever the sampling settings."""
    model, tok = hf_policy
    grammar = _Recording(max_think_chars=8, max_prompt_chars=12)
    engine = HFEngine(model, tok)
    reasons: list[str] = []
    inner = engine.generate

    async def generate(requests):
        out = await inner(requests)
        reasons.extend(g.finish_reason for g in out)
        return out

    engine.generate = generate  # type: ignore[method-assign]
    sampling = SamplingParams(max_tokens=80, temperature=[1.0, 0.7][seed], top_k=[0, 50][seed])
    runner = RolloutRunner(
        engine, tok, None, WorkflowReward(), library=library, max_turns=[5, 8][seed],
        sampling=sampling, grammar=grammar,
    )  # fmt: skip
    trajectories = asyncio.run(runner.run([TASK], [4, 8][seed], seed=seed))
    assert all(t.error is None for t in trajectories)
    assert sum(t.turns for t in trajectories) == len(reasons) > 0
    assert [t.invalid_actions for t in trajectories] == [0] * len(trajectories)
    assert set(reasons) == {"stop"}
    assert set(grammar.states) == {"building", "awaiting_prompt"}
    assert all(0.0 < t.constraint_mass <= 1.0 for t in trajectories)


def test_constraint_is_off_unless_asked(scripted_engine, tiny_tokenizer):
    engine = scripted_engine(tiny_tokenizer, ["<action>finish</action>"] * 4)
    runner = RolloutRunner(engine, tiny_tokenizer, None, WorkflowReward(), max_turns=1)
    asyncio.run(runner.run([TASK], 2, seed=0))
    assert [r.constraint for r in engine.calls[0]] == [None, None]
    engine = scripted_engine(tiny_tokenizer, ["<action>finish</action>"] * 4)
    runner = RolloutRunner(
        engine, tiny_tokenizer, None, WorkflowReward(), max_turns=1, grammar=ActionGrammar()
    )
    trajectories = asyncio.run(runner.run([TASK], 2, seed=0))
    assert all(isinstance(r.constraint, ActionConstraint) for r in engine.calls[0])
    assert all(r.constraint.state == "building" for r in engine.calls[0])
    assert trajectories[0].constraint_mass != trajectories[0].constraint_mass  # NaN: unmeasured


def test_a_constrained_turn_may_end_on_an_eos(scripted_engine, tiny_tokenizer):
    """vLLM's grammar backend admits the model's EOS ids as an end of the grammar, so a
    constrained request stops on them too; the canvas reads the turn without the EOS and the
    end of turn is appended (mask 0)."""
    eot = tiny_tokenizer.convert_tokens_to_ids("<|im_end|>")
    eos = tiny_tokenizer.convert_tokens_to_ids("<|endoftext|>")  # in the generation config
    action = tiny_tokenizer.encode("<action>add</action><operator>Plan</operator>")
    engine = scripted_engine(tiny_tokenizer, [[*action, eos]])
    grammar = ActionGrammar(stop_token_ids=(eot, eos))
    runner = RolloutRunner(
        engine, tiny_tokenizer, None, WorkflowReward(), max_turns=1, grammar=grammar
    )
    trajectory = asyncio.run(runner.run([TASK], 1, seed=0))[0]
    assert engine.calls[0][0].sampling.stop_token_ids == (eot, eos)
    assert trajectory.invalid_actions == 0 and trajectory.dsl == "Plan"
    assert trajectory.token_ids[-2:] == [eos, eot] and trajectory.loss_mask[-2:] == [1, 0]
    free = scripted_engine(tiny_tokenizer, ["<action>finish</action>"])
    asyncio.run(
        RolloutRunner(free, tiny_tokenizer, None, WorkflowReward(), max_turns=1).run([TASK], 1)
    )
    assert free.calls[0][0].sampling.stop_token_ids == (eot,)
