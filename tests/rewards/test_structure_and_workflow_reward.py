"""R_div over real WorkflowGraphs and the gated / ungated / answer-only compositions."""

from __future__ import annotations

import math

import pytest

from flowsteer.canvas.graph import WorkflowGraph
from flowsteer.rewards import RewardOutput, StructureReward, WorkflowReward
from flowsteer.tasks import Task

TASK = Task("g/0", "gsm8k", "math", "2 + 2?", "4")


def graph(*steps: str | tuple[str, list[str]]) -> WorkflowGraph:
    g = WorkflowGraph()
    for step in steps:
        if isinstance(step, str):
            g.add_operator(step)
        else:
            kind, children = step
            g.add_structure(kind, children, count=2 if kind == "loop" else None)
    return g


FULL = graph(
    "Plan",
    ("parallel", ["Programmer", "Custom"]),
    "ScEnsemble",
    ("conditional", ["Verify", "Revise"]),
    "Format",
)


def test_each_part_of_r_div() -> None:
    reward = StructureReward()
    assert reward.components(graph()) == {
        "div/checker": 0.0, "div/format": 0.0, "div/size": 0.0, "div/structure": 0.0, "div": 0.0
    }  # fmt: skip
    assert reward(graph("Custom", "Review")) == pytest.approx(0.2)
    assert reward(graph("Custom", "Format")) == pytest.approx(0.2)
    assert reward(graph("Plan", "Custom", "Custom", "Plan", "Custom", "Plan")) == pytest.approx(0.2)
    assert reward(graph("Plan", "Custom", "Custom", "Plan", "Custom")) == 0.0  # k = 6
    assert reward(graph(("parallel", ["Custom", "Custom"]))) == pytest.approx(0.4)
    assert reward(FULL) == pytest.approx(1.0)


@pytest.mark.parametrize(
    "structure",
    [
        ("parallel", ["Custom", "Programmer"]),
        ("conditional", ["Test", "Revise"]),
        ("loop", ["Custom", "Verify"]),
    ],
)
def test_all_three_control_structures_count(structure: tuple[str, list[str]]) -> None:
    assert StructureReward().components(graph(structure))["div/structure"] == pytest.approx(0.4)


def test_checkers_inside_structures_count_and_repeats_count_for_size() -> None:
    parts = StructureReward(min_operators=3).components(
        graph(("loop", ["Custom", "Test"]), "Custom")
    )
    assert parts["div/checker"] == pytest.approx(0.2)
    assert parts["div/size"] == pytest.approx(0.2)
    assert StructureReward(min_operators=4)(graph("Custom", "Custom", "Custom")) == 0.0


def test_weights_and_k_are_configurable() -> None:
    reward = StructureReward(0.1, 0.0, 0.5, 0.25, min_operators=2)
    assert reward(graph("Verify", "Format")) == pytest.approx(0.6)
    assert reward.max_value == pytest.approx(0.85)
    with pytest.raises(ValueError, match="non-negative"):
        StructureReward(checker_weight=-0.1)
    with pytest.raises(TypeError, match="operator_names"):
        StructureReward()(object())  # type: ignore[arg-type]


class StandInGraph:
    """Any object with the two methods R_div reads."""

    def operator_names(self) -> list[str]:
        return ["Plan", "Programmer", "Custom", "ScEnsemble", "Verify", "Revise", "Format"]

    def structure_kinds(self) -> list[str]:
        return ["loop"]


def test_protocol_graph_is_enough() -> None:
    assert StructureReward()(StandInGraph()) == pytest.approx(1.0)


def test_gate_releases_answer_only_at_full_structure() -> None:
    reward = WorkflowReward()
    out = reward(TASK, FULL, "#### 4")
    assert isinstance(out, RewardOutput)
    assert out.total == pytest.approx(1.0)
    assert out.components["gate"] == 1.0 and out.components["answer"] == 1.0
    wrong = reward(TASK, FULL, "#### 5")
    assert wrong.total == pytest.approx(0.0)
    partial = reward(TASK, graph("Custom", "Verify", "Format"), "#### 4")
    assert partial.total == pytest.approx(-1.0 + 0.4)  # correct answer, gate closed
    assert partial.components["gate"] == 0.0
    assert partial.components["answer"] == 1.0  # still logged
    assert set(out.components) == {
        "div/checker", "div/format", "div/size", "div/structure", "div", "answer", "gate", "truncated"
    }  # fmt: skip


def test_gate_tolerates_float_sums() -> None:
    weights = (0.7, 0.1, 0.1, 0.1)
    assert sum(weights) != 1.0  # 0.9999999999999999
    reward = WorkflowReward(StructureReward(*weights))
    out = reward(TASK, FULL, "4")
    assert out.components["div"] != 1.0
    assert out.components["gate"] == 1.0
    assert out.total == pytest.approx(1.0)


def test_ablation_modes() -> None:
    g = graph("Custom", "Verify")
    assert WorkflowReward(mode="ungated")(TASK, g, "4").total == pytest.approx(-1 + 0.2 + 1)
    assert WorkflowReward(mode="ungated")(TASK, g, "5").total == pytest.approx(-1 + 0.2)
    assert WorkflowReward(mode="answer_only")(TASK, g, "4").total == 1.0
    assert WorkflowReward(mode="answer_only")(TASK, graph(), "5").total == 0.0
    assert WorkflowReward(mode="gated")(TASK, g, "4").total == pytest.approx(-1 + 0.2)


def test_answer_can_be_skipped_when_gated_and_scorer_is_injected() -> None:
    calls: list[str | None] = []

    def scorer(task: Task, prediction: str | None) -> float:
        calls.append(prediction)
        return 0.5

    lazy = WorkflowReward(score_answer_when_gated=False, answer_scorer=scorer)
    out = lazy(TASK, graph("Custom"), "x")
    assert calls == [] and math.isnan(out.components["answer"])
    assert out.total == pytest.approx(-1.0)
    assert lazy(TASK, FULL, "y").total == pytest.approx(0.5)
    assert calls == ["y"]


def test_truncated_episode_is_scored_on_final_graph_and_flagged() -> None:
    out = WorkflowReward()(TASK, FULL, "#### 4", truncated=True)
    assert out.truncated and out.components["truncated"] == 1.0
    assert out.total == pytest.approx(1.0)
    assert WorkflowReward()(TASK, FULL, None).total == pytest.approx(0.0)


def test_bad_config_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match="sum to 1"):
        WorkflowReward(StructureReward(structure_weight=0.3))
    WorkflowReward(StructureReward(structure_weight=0.3), mode="ungated")  # fine without a gate
    with pytest.raises(ValueError, match="mode"):
        WorkflowReward(mode="grpo")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="Task"):
        WorkflowReward()("task", FULL, "4")  # type: ignore[arg-type]


# ------------------------------------------------- R_div reads the canvas's library (8.8)
def _plugin_library():
    from flowsteer.operators import OperatorLibrary
    from flowsteer.operators.spec import OperatorSpec

    return OperatorLibrary.default().extend(
        OperatorSpec("SqlCheck", "verification", "Runs the query and checks it."),
        OperatorSpec("Tidy", "formatting", "Keeps only the final answer."),
    )


PLUGIN = graph(
    "Plan",
    ("parallel", ["Programmer", "Custom"]),
    "ScEnsemble",
    ("conditional", ["SqlCheck", "Revise"]),
    "Tidy",
)


def test_a_plug_in_checker_and_formatter_earn_their_parts_with_the_canvas_library() -> None:
    lib = _plugin_library()
    parts = StructureReward(library=lib).components(PLUGIN)
    assert parts["div/checker"] == pytest.approx(0.2) and parts["div/format"] == pytest.approx(0.2)
    assert parts["div"] == pytest.approx(1.0)
    out = WorkflowReward()(TASK, PLUGIN, "#### 4", library=lib)  # per call: the canvas's
    assert out.components["gate"] == 1.0 and out.total == pytest.approx(1.0)


def test_an_operator_the_reward_library_lacks_is_an_error_not_a_silent_zero() -> None:
    with pytest.raises(ValueError, match="'SqlCheck' is not in the operator library"):
        WorkflowReward()(TASK, PLUGIN, "#### 4")


def test_a_restricted_library_classifies_by_category_like_the_canvas() -> None:
    from flowsteer.operators import OperatorLibrary

    lib = OperatorLibrary.default().restrict(["Custom", "Review", "Format"])
    parts = StructureReward().components(graph("Custom", "Review", "Format"), lib)
    assert parts["div/checker"] == pytest.approx(0.2) and parts["div/format"] == pytest.approx(0.2)


def test_score_canvas_takes_everything_from_the_canvas() -> None:
    import asyncio

    from flowsteer.canvas import Canvas, ExecutionResult

    class Answer4:
        async def execute(self, graph, task):
            return ExecutionResult(answer="#### 4")

    async def episode() -> RewardOutput:
        canvas = Canvas(TASK, Answer4(), library=_plugin_library())
        for text in [
            "<action>add</action><operator>Plan</operator>", "<prompt></prompt>",
            "<action>add</action><structure>parallel</structure><operators>Programmer, Custom"
            "</operators>", "<prompt></prompt>", "<prompt></prompt>",
            "<action>add</action><operator>ScEnsemble</operator>", "<prompt></prompt>",
            "<action>add</action><structure>conditional</structure><condition>SqlCheck"
            "</condition><on_fail>Revise</on_fail>", "<prompt></prompt>", "<prompt></prompt>",
            "<action>add</action><operator>Tidy</operator>", "<prompt></prompt>",
            "<action>finish</action>",
        ]:  # fmt: skip
            await canvas.step(text)
        assert canvas.done and not canvas.truncated
        return await WorkflowReward().score_canvas(canvas)

    out = asyncio.run(episode())
    assert out.components["div"] == pytest.approx(1.0) and out.total == pytest.approx(1.0)


def test_truncation_penalty_applies_only_to_truncated_episodes() -> None:
    from flowsteer.canvas.graph import WorkflowGraph
    from flowsteer.rewards import WorkflowReward
    from flowsteer.tasks import Task

    task = Task("g/0", "gsm8k", "math", "2+2?", "4")
    graph = WorkflowGraph()
    graph.add_operator("Programmer")
    paper, penalised = WorkflowReward(), WorkflowReward(truncation_penalty=0.25)
    finished = penalised(task, graph, "#### 4")
    assert finished.total == paper(task, graph, "#### 4").total
    cut = penalised(task, graph, "#### 4", truncated=True)
    assert cut.total == pytest.approx(paper(task, graph, "#### 4", truncated=True).total - 0.25)
    assert cut.components["truncated"] == 1.0
    with pytest.raises(ValueError, match="truncation_penalty must be a finite number >= 0"):
        WorkflowReward(truncation_penalty=-1.0)
