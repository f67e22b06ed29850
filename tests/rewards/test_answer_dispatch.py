"""score_answer routes each of the twelve sources to its scorer and metric; the six training
sources keep their behaviour, and user sources are scored by kind."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from flowsteer.rewards import answer_metrics, score_answer, score_answer_async
from flowsteer.tasks import SOURCES, Task, load_tasks

DATA = Path(__file__).parents[1] / "tasks" / "data"

METRICS = {
    "gsm8k": ("accuracy",), "math": ("accuracy",), "hotpotqa": ("f1", "em"),
    "squad_v2": ("f1", "em"), "mbpp": ("pass@1",), "humaneval": ("pass@1",),
    "triviaqa": ("em", "f1"), "nq_open": ("em", "f1"), "math_qa": ("accuracy",),
    "aime": ("accuracy",), "apps": ("pass@1",), "ds1000": ("pass@1",),
}  # fmt: skip


def _task(source: str) -> Task:
    if source == "hotpotqa":
        return load_tasks(source, DATA / "hotpotqa_hf.jsonl")[0]
    return load_tasks(source, DATA / f"{source}.jsonl")[0]


@pytest.mark.parametrize("source", sorted(METRICS))
def test_each_source_reports_its_metrics_headline_first(source):
    assert source in SOURCES
    assert answer_metrics(_task(source)) == METRICS[source]


@pytest.mark.parametrize(
    "source", ["gsm8k", "math", "hotpotqa", "squad_v2", "triviaqa", "nq_open", "math_qa", "aime"]
)
def test_the_gold_scores_one_on_every_text_source(source):
    task = _task(source)
    for metric in answer_metrics(task):
        assert score_answer(task, task.answer, metric=metric) == 1.0


def test_training_sources_keep_their_scores():
    squad = Task("q/0", "squad_v2", "qa", "Who?", "Ada Lovelace")
    assert score_answer(squad, "Lovelace") == pytest.approx(2 / 3)  # F1 is still the headline
    assert score_answer(squad, "Lovelace", metric="em") == 0.0
    assert score_answer(Task("g/0", "gsm8k", "math", "2+2?", "4"), "#### 4") == 1.0


def test_a_users_own_source_is_scored_by_kind():
    own = Task("t/0", "trivia", "qa", "Capital of France?", "Paris")
    assert answer_metrics(own) == ("f1", "em")
    assert score_answer(own, "Paris, France") == pytest.approx(2 / 3)


def test_unknown_metric_and_non_task_raise():
    with pytest.raises(ValueError, match="has no metric 'f1'"):
        score_answer(_task("aime"), "70", metric="f1")
    with pytest.raises(TypeError, match=r"flowsteer\.tasks\.Task"):
        score_answer({"answer": "70"}, "70")  # type: ignore[arg-type]


def test_async_twin_routes_the_same_way():
    async def scores():
        return await asyncio.gather(
            score_answer_async(_task("triviaqa"), "sunset blvd"),
            score_answer_async(_task("triviaqa"), "Sunset", metric="f1"),
            score_answer_async(_task("math_qa"), "(a)"),
            score_answer_async(_task("aime"), "\\boxed{70}"),
        )

    assert asyncio.run(scores()) == [1.0, pytest.approx(2 / 3), 1.0, 1.0]
