"""Baselines run with bounded concurrency and a plain-text progress line off a terminal; the
chain-of-thought answer is the last ``Answer:`` line."""

from __future__ import annotations

import asyncio
import io

from flowsteer.canvas.executor import WorkflowExecutor
from flowsteer.evaluation.baselines import cot_answer
from flowsteer.evaluation.evaluation import parse_baselines, play_system
from flowsteer.evaluation.progress import Progress
from flowsteer.evaluation.store import EpisodeStore
from flowsteer.llm.scripted import ScriptedBackend
from flowsteer.tasks import Task


def test_baseline_episodes_run_concurrently_but_bounded(tmp_path):
    backend = ScriptedBackend(["#### 4"], latency_s=0.05, when_exhausted="repeat_last")
    executor = WorkflowExecutor(backend)
    tasks = [Task(f"t{i}", "gsm8k", "math", "2+2?", "4" if i % 2 else "5") for i in range(6)]
    store = EpisodeStore(tmp_path, {"x": 1})
    stream = io.StringIO()
    asyncio.run(
        play_system("direct", tasks, store, executor=executor, concurrency=2, stream=stream)
    )
    assert backend.max_in_flight == 2
    assert sorted(r.index for r in store.records) == list(range(6))
    assert [r.score for r in sorted(store.records, key=lambda r: r.index)] == [0.0, 1.0] * 3
    lines = stream.getvalue().splitlines()
    assert lines[-1].startswith("eval direct: 6/6 done, accuracy 0.500, ETA ")
    assert "\r" not in stream.getvalue()


def test_progress_redraws_in_place_on_a_terminal():
    class Tty(io.StringIO):
        def isatty(self) -> bool:
            return True

    stream = Tty()
    progress = Progress("policy", 2, stream)
    progress.update(1.0)
    progress.update(None)
    progress.close()
    text = stream.getvalue()
    assert text.count("\r") == 2 and "2/2 done, accuracy 1.000" in text and text.endswith("\n")


def test_cot_answer_and_baseline_names():
    assert cot_answer("think...\nAnswer: Paris", "qa") == "Paris"
    assert cot_answer("so 9+9\nanswer: 18", "math") == "#### 18"
    assert cot_answer("def f(): pass", "code") == "def f(): pass"
    assert parse_baselines("none") == [] and parse_baselines("cot,direct") == ["cot", "direct"]
    try:
        parse_baselines("direct,oracle")
    except ValueError as err:
        assert "oracle" in str(err) and "--baselines" in str(err)
    else:
        raise AssertionError("an unknown baseline was accepted")
