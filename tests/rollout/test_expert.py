"""Expert episodes for the SFT warm start: valid by construction, varied, played through the real
canvas, and tokenised with exactly the RL masks (checked against the template's own
assistant-token mask)."""

from __future__ import annotations

import asyncio
from collections import Counter

import pytest

from flowsteer.canvas import Canvas, FinishConstraints
from flowsteer.canvas.executor import WorkflowExecutor
from flowsteer.llm.scripted import ScriptedBackend
from flowsteer.operators.library import OperatorLibrary
from flowsteer.rollout.chat import ChatFormat
from flowsteer.rollout.expert import SHAPES, ExpertPlanner, ExpertScript, expert_trajectories
from flowsteer.tasks import Task

PAPER = FinishConstraints(
    min_operators=6, require_checker=True, require_structure=True, require_format=True
)
TASKS = [
    Task("toy/0", "toy", "math", "What is 2 + 2?", "4"),
    Task("toy/1", "toy", "code", "Write add(a, b).", "def add(a, b): return a + b"),
    Task("toy/2", "toy", "qa", "Who wrote Hamlet?", "Shakespeare"),
]


def _play_text(script: ExpertScript, constraints: FinishConstraints, max_turns: int = 20):
    """The script through a bare canvas at the text level: (observations, step infos)."""
    canvas = Canvas(script.task, finish_constraints=constraints, max_turns=max_turns)
    observations, infos = [canvas.reset()], []
    for turn in script.turns:
        result = asyncio.run(canvas.step(turn))
        infos.append(result.info)
        observations.append(result.observation)
    return canvas, observations, infos


@pytest.mark.parametrize(
    "constraints",
    [PAPER, FinishConstraints(), FinishConstraints(min_operators=3, require_structure=True)],
    ids=["paper", "default", "structure"],
)
def test_every_turn_is_accepted_and_the_episode_finishes(constraints):
    planner = ExpertPlanner(OperatorLibrary.default(), constraints, seed=1)
    shapes = Counter()
    for i in range(40):
        script = planner.script(TASKS[i % 3])
        shapes[script.shape] += 1
        canvas, _, infos = _play_text(script, constraints)
        assert all(info.valid for info in infos), [i.error for i in infos if not i.valid]
        assert canvas.done and not canvas.truncated
        assert not constraints.violations(canvas.graph, canvas.library)
        assert len(script.turns) <= 20
    expected = set(SHAPES) - ({"chain"} if constraints.require_structure else set())
    assert set(shapes) == expected  # every shape the constraints allow is drawn


def test_the_seed_fixes_the_scripts_and_changes_them():
    def scripts(seed):
        planner = ExpertPlanner(OperatorLibrary.default(), PAPER, seed=seed)
        return [planner.script(TASKS[0]).turns for _ in range(6)]

    assert scripts(0) == scripts(0)
    assert scripts(0) != scripts(1)


def test_mask_covers_exactly_the_assistant_tokens(tiny_tokenizer):
    """The trajectory equals the template's rendering of the conversation the canvas had, and
    its loss mask equals the template's own assistant-token mask (`{% generation %}`)."""
    chat = ChatFormat(tiny_tokenizer)
    planner = ExpertPlanner(OperatorLibrary.default(), PAPER, think_rate=0.5, seed=3)
    [trajectory] = asyncio.run(expert_trajectories(TASKS[:1], chat, planner, 1))
    replay = ExpertPlanner(OperatorLibrary.default(), PAPER, think_rate=0.5, seed=3)
    replay.rng.shuffle(list(TASKS[:1]))  # the same draws as expert_trajectories
    script = replay.script(TASKS[0])
    canvas, observations, _ = _play_text(script, PAPER)
    messages = [{"role": "system", "content": canvas.system_prompt()}]
    for observation, turn in zip(observations, script.turns, strict=False):
        messages += [
            {"role": "user", "content": observation},
            {"role": "assistant", "content": turn},
        ]
    rendered = tiny_tokenizer.apply_chat_template(
        messages, tokenize=True, return_dict=True, return_assistant_tokens_mask=True
    )
    n = len(trajectory.token_ids)
    assert trajectory.token_ids == rendered["input_ids"][:n]
    assert trajectory.loss_mask == rendered["assistant_masks"][:n]
    assert rendered["input_ids"][n:] == tiny_tokenizer.encode("\n")  # only the template's tail
    assert sum(trajectory.loss_mask) == trajectory.policy_tokens > 0
    assert trajectory.finished and trajectory.invalid_actions == 0
    assert trajectory.reward_components["div"] == 1.0  # the paper's R_div, all four parts


def test_observations_come_from_the_executor(tiny_tokenizer):
    executor = WorkflowExecutor(ScriptedBackend(["The answer is 42."], when_exhausted="cycle"))
    planner = ExpertPlanner(OperatorLibrary.default(), PAPER, seed=0)
    chat = ChatFormat(tiny_tokenizer)
    [trajectory] = asyncio.run(expert_trajectories(TASKS[:1], chat, planner, 1, executor=executor))
    text = tiny_tokenizer.decode(trajectory.token_ids)
    assert "answer: 42" in text and "skipped (no executor)" not in text
    assert trajectory.backend_calls > 0


def test_an_empty_expert_set_is_refused(tiny_tokenizer):
    planner = ExpertPlanner(OperatorLibrary.default(), PAPER)
    chat = ChatFormat(tiny_tokenizer)
    with pytest.raises(ValueError, match="num_episodes must be at least 1, got 0"):
        asyncio.run(expert_trajectories(TASKS, chat, planner, 0))


@pytest.mark.parametrize(
    ("operators", "structures", "constraints", "message"),
    [
        (["Plan", "Programmer", "Format"], None, PAPER, "no verification operator"),
        (["Programmer", "Verify", "Revise"], None, PAPER, "no formatting operator"),
        (["Plan", "Verify"], None, FinishConstraints(), "no solving operator"),
        (["Programmer", "Verify", "Format"], [], PAPER, "no expert shape"),
    ],
)
def test_a_library_that_cannot_meet_the_constraints_is_refused(
    operators, structures, constraints, message
):
    library = OperatorLibrary.default().restrict(operators, structures)
    with pytest.raises(ValueError) as err:
        ExpertPlanner(library, constraints)
    assert message in str(err.value)
    assert "\n" not in str(err.value)


def test_too_few_turns_is_refused():
    with pytest.raises(ValueError, match="max_turns=6 is too few"):
        ExpertPlanner(OperatorLibrary.default(), PAPER, max_turns=6)
