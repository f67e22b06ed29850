"""SimulatedBackend: replies every operator's parser reads, accuracy that follows the workflow's
structure by the documented formulas (through the real executor and scorer), reproducible draws,
clear labels, and construction from YAML as the CLI does it."""

from __future__ import annotations

import asyncio
import inspect
import math
from pathlib import Path

import pytest
import yaml

from flowsteer.canvas.executor import WorkflowExecutor
from flowsteer.canvas.graph import WorkflowGraph
from flowsteer.llm import LLMBackend, ScriptedBackend, SimulatedBackend
from flowsteer.llm.operator_prompt import OperatorPrompt
from flowsteer.operators.base import OperatorOutput, WorkflowState
from flowsteer.operators.library import OperatorLibrary
from flowsteer.operators.registry import build_operator
from flowsteer.rewards import score_answer
from flowsteer.tasks import Task, load_tasks

REPO = Path(__file__).resolve().parents[2]
EXAMPLES = REPO / "flowsteer" / "examples" / "data"
TASK_DATA = REPO / "tests" / "tasks" / "data"
MATH = load_tasks("gsm8k", EXAMPLES / "gsm8k_sample.jsonl")
QA = load_tasks("squad_v2", TASK_DATA / "squad_v2.jsonl")
CODE = [
    load_tasks("humaneval", EXAMPLES / "humaneval_sample.jsonl")[0],  # completion + prompt
    load_tasks("mbpp", TASK_DATA / "mbpp.jsonl")[0],  # a whole program
]
LIBRARY = OperatorLibrary.default()


def run_operator(backend, name: str, state: WorkflowState, prompt: str = "") -> OperatorOutput:
    operator = build_operator(LIBRARY.get(name))
    return asyncio.run(operator.run(state, prompt or LIBRARY.get(name).default_prompt, backend))


def wrong_of(task: Task) -> str:
    """A wrong answer the simulator itself would give."""
    backend = SimulatedBackend(p_solve=0.0, tasks=[task])
    return run_operator(backend, "Custom", WorkflowState(task)).answer


def right_of(task: Task) -> str:
    backend = SimulatedBackend(p_solve=1.0, tasks=[task])
    return run_operator(backend, "Custom", WorkflowState(task)).answer


# ---------------------------------------------------------------- every operator's parser


@pytest.mark.parametrize("task", [MATH[0], QA[0], QA[1]], ids=["math", "qa", "qa-unanswerable"])
@pytest.mark.parametrize("name", LIBRARY.names)
def test_every_operator_parses_the_reply_and_gets_the_role_rate(name: str, task: Task) -> None:
    """Rates 1 or 0 make each role's reply certain, so each outcome is checked exactly."""
    spec = LIBRARY.get(name)
    right, wrong = right_of(task), wrong_of(task)
    assert score_answer(task, right) == 1.0 and score_answer(task, wrong) == 0.0
    sure = SimulatedBackend(p_solve=1.0, q_detect=1.0, r_fix=1.0, tasks=[task])
    never = SimulatedBackend(p_solve=0.0, q_detect=0.0, r_fix=0.0, tasks=[task])
    bare = WorkflowState(task)
    on_wrong = WorkflowState(task, candidate=wrong)
    if spec.category == "planning":
        out = run_operator(sure, name, bare)
        assert out.error is None and out.plan and out.answer is None
    elif spec.category == "solving":
        assert score_answer(task, run_operator(sure, name, bare).answer) == 1.0
        assert score_answer(task, run_operator(never, name, bare).answer) == 0.0
    elif spec.category == "verification":
        assert run_operator(sure, name, on_wrong).passed is False
        assert run_operator(never, name, on_wrong).passed is True
        on_right = WorkflowState(task, candidate=right)
        assert run_operator(sure, name, on_right).passed is True
        alarmed = SimulatedBackend(false_alarm=1.0, tasks=[task])
        assert run_operator(alarmed, name, on_right).passed is False
    elif spec.category == "revision":
        failed = WorkflowState(
            task, candidate=wrong, feedback="<verdict>FAIL</verdict>", passed=False
        )
        assert score_answer(task, run_operator(sure, name, failed).answer) == 1.0
        assert run_operator(never, name, failed).answer == wrong
        # no detected error: nothing to fix, the candidate comes back unchanged
        assert run_operator(sure, name, on_wrong).answer == wrong
    elif spec.category == "ensemble":
        tie = WorkflowState(task, candidates=(wrong, right), candidate=wrong)
        picks = {
            run_operator(SimulatedBackend(seed=s, tasks=[task]), name, tie).answer
            for s in range(12)
        }
        assert picks == {wrong, right}  # a tie is broken at random, and the reply is read
        majority = WorkflowState(task, candidates=(wrong, right, right), candidate=wrong)
        assert run_operator(sure, name, majority).answer == right
    else:
        assert spec.category == "formatting"
        for candidate in (right, wrong):
            out = run_operator(sure, name, WorkflowState(task, candidate=candidate))
            assert out.error is None and "kept" not in out.text  # the reply itself was used
            assert score_answer(task, out.answer) == score_answer(task, candidate)


@pytest.mark.parametrize("task", CODE, ids=["humaneval", "mbpp"])
@pytest.mark.parametrize("p", [1.0, 0.0])
def test_code_answers_are_judged_by_the_real_sandbox(p: float, task: Task) -> None:
    """Right: the canonical solution, wrong: a constant return; the hidden tests decide."""
    backend = SimulatedBackend(p_solve=p, q_detect=1.0, tasks=[task])
    custom = run_operator(backend, "Custom", WorkflowState(task))
    assert score_answer(task, custom.answer) == p
    checked = run_operator(backend, "Review", WorkflowState(task, candidate=custom.answer))
    assert checked.passed is (p == 1.0)
    formatted = run_operator(backend, "Format", WorkflowState(task, candidate=custom.answer))
    assert formatted.error is None and "kept" not in formatted.text
    assert score_answer(task, formatted.answer) == p


def test_programmer_runs_the_simulated_program_in_the_sandbox() -> None:
    for task in (MATH[0], *CODE):
        backend = SimulatedBackend(p_solve=1.0, q_detect=1.0, tasks=[task])
        out = run_operator(backend, "Programmer", WorkflowState(task))
        assert out.error is None and out.code
        assert score_answer(task, out.answer) == 1.0
        # Programmer's program (HumanEval: prompt + program) is still judged right
        assert run_operator(backend, "Verify", WorkflowState(task, candidate=out.answer)).passed


def test_tasks_sharing_a_question_are_told_apart_by_their_context() -> None:
    question = "Which city is named in the passage?"
    paris = Task("q/0", "squad_v2", "qa", question, "Paris", context="We flew to Paris in May.")
    rome = Task("q/1", "squad_v2", "qa", question, "Rome", context="We drove to Rome in June.")
    backend = SimulatedBackend(p_solve=1.0, tasks=[paris, rome])
    for task in (paris, rome):
        assert run_operator(backend, "Custom", WorkflowState(task)).answer == task.answer


# ---------------------------------------------------------------- accuracy by structure

P, Q, R = 0.6, 0.8, 0.7
SEEDS = range(50)  # x 8 tasks = 400 episodes per shape


def _graph(*steps) -> WorkflowGraph:
    """Steps: an operator name, ("parallel", [(name, prompt), ...]), or (kind, names, count)."""
    g = WorkflowGraph()
    for step in steps:
        if isinstance(step, str):
            g.add_operator(step)
        elif step[0] == "parallel":
            sid = g.add_structure("parallel", [name for name, _ in step[1]])
            for child, (_, prompt) in zip(g.node(sid).children, step[1], strict=True):
                g.set_prompt(child, prompt)
        else:
            g.add_structure(step[0], step[1], count=step[2] if len(step) > 2 else None)
    return g


def _vote(p: float, k: int) -> float:
    # Wrong answers never agree: 2 or more right win outright; 1 right ties k ways (1/k).
    return 1 - (1 - p) ** k - (k - 1) * p * (1 - p) ** (k - 1)


def _loop(p: float, q: float, n: int) -> float:
    miss = (1 - p) * q  # wrong and caught: the next iteration solves again
    return p * (1 - miss**n) / (1 - miss)


THREE = [("Custom", "Solve it."), ("AnswerGenerate", ""), ("Custom", "Solve it another way.")]
SHAPES = {
    "solver": (_graph("Custom"), {}, P),
    "plan-solver-format": (_graph("Plan", "AnswerGenerate", "Format"), {}, P),
    "solver-revise (no checker)": (_graph("Custom", "Revise"), {}, P),
    "solver-check?revise": (
        _graph("Custom", ("conditional", ["Verify", "Revise"])),
        {},
        P + (1 - P) * Q * R,
    ),
    "solver-check?revise, false alarms": (
        _graph("Custom", ("conditional", ["Review", "Revise"]), "Format"),
        {"false_alarm": 0.3},
        P + (1 - P) * Q * R,
    ),
    "vote of 3": (_graph(("parallel", THREE), "ScEnsemble"), {}, _vote(P, 3)),
    "(solve -> check) * 3": (_graph(("loop", ["Custom", "Verify"], 3)), {}, _loop(P, Q, 3)),
}


async def _accuracy(graph: WorkflowGraph, settings: dict) -> float:
    scores = []
    for seed in SEEDS:
        backend = SimulatedBackend(
            p_solve=P, q_detect=Q, r_fix=R, seed=seed, tasks=MATH, **settings
        )
        executor = WorkflowExecutor(backend, LIBRARY)
        results = await asyncio.gather(*(executor.execute(graph, t) for t in MATH))
        for task, result in zip(MATH, results, strict=True):
            assert result.ok, result.errors
            scores.append(score_answer(task, result.answer))
    return sum(scores) / len(scores)


@pytest.mark.parametrize("shape", list(SHAPES))
def test_measured_accuracy_matches_the_formula(shape: str) -> None:
    graph, settings, expected = SHAPES[shape]
    measured = asyncio.run(_accuracy(graph, settings))
    n = len(SEEDS) * len(MATH)
    tolerance = 4 * math.sqrt(expected * (1 - expected) / n)
    assert abs(measured - expected) <= tolerance, (shape, measured, expected, tolerance)


def test_the_formulas_tell_shapes_apart() -> None:
    """The tolerance above is tight enough that a checked workflow cannot pass for a bare one."""
    n = len(SEEDS) * len(MATH)
    gap = (1 - P) * Q * R
    assert gap > 4 * math.sqrt(P * (1 - P) / n) + 4 * math.sqrt((P + gap) * (1 - P - gap) / n)


# ---------------------------------------------------------------- reproducibility


def _episodes(backend: SimulatedBackend, order: list[int], concurrent: bool) -> dict[int, str]:
    graph = _graph(("parallel", THREE), "ScEnsemble", ("conditional", ["Verify", "Revise"]))
    executor = WorkflowExecutor(backend, LIBRARY)

    async def go() -> dict[int, str]:
        if concurrent:
            results = await asyncio.gather(*(executor.execute(graph, MATH[i]) for i in order))
        else:
            results = [await executor.execute(graph, MATH[i]) for i in order]
        return {i: r.answer for i, r in zip(order, results, strict=True)}

    return asyncio.run(go())


def test_results_do_not_depend_on_order_or_concurrency_only_on_the_seed() -> None:
    forward = list(range(len(MATH)))
    a = _episodes(SimulatedBackend(seed=3, tasks=MATH), forward, concurrent=False)
    b = _episodes(SimulatedBackend(seed=3, tasks=MATH[::-1]), forward[::-1], concurrent=True)
    assert a == b
    others = [_episodes(SimulatedBackend(seed=s, tasks=MATH), forward, True) for s in (4, 5)]
    assert any(o != a for o in others)


def test_identical_calls_get_identical_replies() -> None:
    """Like a greedy model: two copies of one operator with one prompt vote once."""
    graph = _graph(("parallel", [("Custom", "Solve."), ("Custom", "Solve.")]))
    for seed in range(10):
        backend = SimulatedBackend(seed=seed, tasks=MATH)
        result = asyncio.run(WorkflowExecutor(backend, LIBRARY).execute(graph, MATH[0]))
        first, second = (r.output for r in result.trace)
        assert first == second


# ---------------------------------------------------------------- protocol, labels, errors


def test_same_signature_and_protocol_as_the_other_backends() -> None:
    assert inspect.signature(SimulatedBackend.complete) == inspect.signature(
        ScriptedBackend.complete
    )
    assert isinstance(SimulatedBackend(), LLMBackend)


def test_labelled_as_a_simulator_everywhere() -> None:
    backend = SimulatedBackend(p_solve=0.3, seed=7, tasks=MATH, per_operator={"programmer": 0.9})
    assert backend.is_simulator is True
    assert (
        repr(backend)
        == backend.name
        == (
            "SimulatedBackend(p_solve=0.3, q_detect=0.8, r_fix=0.7, false_alarm=0, seed=7, "
            "Programmer=0.9)"
        )
    )
    described = backend.describe()
    assert described["simulator"] is True and described["name"] == backend.name
    assert described["tasks"] == len(MATH) and described["per_operator/Programmer"] == 0.9
    assert all(isinstance(v, bool | int | float | str) for v in described.values())


def test_per_operator_rate_replaces_the_role_rate() -> None:
    backend = SimulatedBackend(p_solve=0.0, per_operator={"AnswerGenerate": 1.0}, tasks=MATH)
    state = WorkflowState(MATH[0])
    assert score_answer(MATH[0], run_operator(backend, "AnswerGenerate", state).answer) == 1.0
    assert score_answer(MATH[0], run_operator(backend, "Custom", state).answer) == 0.0


def test_unknown_task_is_an_error_value_and_a_plain_chat_is_answered() -> None:
    backend = SimulatedBackend(tasks=MATH)
    stranger = Task("x/0", "gsm8k", "math", "How many legs has a spider?", "8")
    out = run_operator(backend, "Custom", WorkflowState(stranger))
    assert out.answer is None and "no registered task has the problem" in out.error
    assert "How many legs" in out.error and backend.unmatched == 1
    backend.register([stranger])
    assert run_operator(backend, "Custom", WorkflowState(stranger)).error is None
    ping = asyncio.run(backend.complete([{"role": "user", "content": "ping"}], max_tokens=4))
    assert ping.ok and "simulator" in ping.text
    bad = asyncio.run(backend.complete([{"role": "user", "content": "x"}], top_k=3))
    assert not bad.ok and "top_k" in bad.error
    assert backend.stats.failures == 2 and backend.stats.calls == 4


def test_prompt_reader_finds_a_question_with_blank_lines_and_every_section() -> None:
    task = CODE[0]  # a HumanEval prompt: its question holds blank lines
    backend = SimulatedBackend(tasks=[task])
    seen: list[OperatorPrompt] = []
    original = backend._reply

    def spy(chat):
        seen.append(OperatorPrompt.read(chat))
        return original(chat)

    backend._reply = spy  # type: ignore[method-assign]
    state = WorkflowState(
        task, plan="1. go", candidate="A\n\nB", feedback="wrong\n\nreally", passed=False
    )
    run_operator(backend, "Revise", state)
    (prompt,) = seen
    assert prompt.operator == "Revise"
    assert task.question.strip() in list(prompt.problems())
    assert prompt.candidate == "A\n\nB" and prompt.feedback_verdict == "failed"


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"p_solve": 1.5}, "p_solve must be in [0, 1], got 1.5"),
        ({"q_detect": "high"}, "q_detect must be in [0, 1]"),
        ({"per_operator": {"Programer": 0.9}}, "did you mean Programmer"),
        ({"per_operator": {"Format": 0.9}}, "Format (formatting) has no rate"),
        (
            {"data": [{"source": "gsm8k", "path": "/no/such/file.jsonl"}]},
            "data[0] (/no/such/file.jsonl)",
        ),
        ({"library": "/no/such/library.yaml"}, "library file '/no/such/library.yaml'"),
        ({"data": [{"source": "gsm8k", "file": "x.jsonl"}]}, "data[0] (None): "),
        ({"data": [{"source": "nosuch", "path": "x.jsonl"}]}, "unknown task source 'nosuch'"),
    ],
)
def test_bad_settings_give_one_line_errors(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError) as info:
        SimulatedBackend(**kwargs)
    assert message in str(info.value) and "\n" not in str(info.value)


def test_built_from_yaml_through_jsonargparse_like_the_cli() -> None:
    from jsonargparse import ArgumentParser

    config = {
        "executor": {
            "backend": {
                "class_path": "flowsteer.llm.simulated.SimulatedBackend",
                "init_args": {
                    "p_solve": 1.0,
                    "seed": 3,
                    "data": [{"source": "gsm8k", "path": str(EXAMPLES / "gsm8k_sample.jsonl")}],
                    "per_operator": {"Verify": 0.5},
                },
            },
        }
    }
    parser = ArgumentParser(exit_on_error=False)
    parser.add_class_arguments(WorkflowExecutor, "executor")
    cfg = parser.parse_string(yaml.safe_dump(config))
    instantiate = getattr(parser, "instantiate", None) or parser.instantiate_classes
    executor = instantiate(cfg).executor
    backend = executor.backend
    assert isinstance(backend, SimulatedBackend) and backend.task_count == len(MATH)
    assert (backend.p_solve, backend.seed, backend.per_operator) == (1.0, 3, {"Verify": 0.5})
    result = asyncio.run(executor.execute(_graph("Custom", "Format"), MATH[1]))
    assert score_answer(MATH[1], result.answer) == 1.0
