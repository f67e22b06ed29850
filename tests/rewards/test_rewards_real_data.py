"""The answer scorers on the real datasets in ../shared/data (skipped where it is absent).

* GSM8K test (1319): each gold scores 1.0 against its own full solution text (with the
  ``<<48/2=24>>`` calculator annotations and the ``#### n`` line) and 0.0 against gold + 1.
* HumanEval (164): every prompt + canonical solution passes its hidden tests in the sandbox
  (also when the solution is given alone, as a completion), and every prompt with the body
  replaced by ``pass`` fails. Runs ~8 sandboxes at a time.
"""

from __future__ import annotations

import asyncio
import json
import time
from fractions import Fraction
from pathlib import Path

from flowsteer.rewards import CodeAnswerScorer, MathAnswerScorer
from flowsteer.tasks import Task, load_tasks

IN_FLIGHT = 8


def test_gsm8k_golds_match_their_own_solutions_and_not_gold_plus_one(shared_data: Path) -> None:
    path = shared_data / "gsm8k" / "test.jsonl"
    tasks = load_tasks("gsm8k", path)
    solutions = [json.loads(line)["answer"] for line in path.read_text().splitlines() if line]
    assert len(tasks) == len(solutions) == 1319
    scorer = MathAnswerScorer()
    own, plus_one = [], []
    for task, solution in zip(tasks, solutions, strict=True):
        gold = Fraction(task.answer.replace(",", ""))
        own.append(scorer(task, solution))
        plus_one.append(scorer(task, f"{solution.rsplit('####', 1)[0]}#### {gold + 1}"))
    failed = [t.id for t, s in zip(tasks, own, strict=True) if s != 1.0]
    accepted = [t.id for t, s in zip(tasks, plus_one, strict=True) if s != 0.0]
    assert not failed, f"{len(failed)} golds did not match their own solution: {failed[:10]}"
    assert not accepted, f"{len(accepted)} golds matched gold + 1: {accepted[:10]}"


async def _score_all(scorer: CodeAnswerScorer, pairs: list[tuple[Task, str]]) -> list[float]:
    gate = asyncio.Semaphore(IN_FLIGHT)

    async def one(task: Task, program: str) -> float:
        async with gate:
            return await scorer.score_async(task, program)

    return list(await asyncio.gather(*(one(t, p) for t, p in pairs)))


def test_humaneval_canonical_solutions_pass_and_stubs_fail(shared_data: Path) -> None:
    tasks = load_tasks("humaneval", shared_data / "humaneval" / "HumanEval.jsonl.gz")
    assert len(tasks) == 164
    scorer = CodeAnswerScorer(timeout=20.0)
    start = time.monotonic()
    canonical = asyncio.run(_score_all(scorer, [(t, t.question + t.answer) for t in tasks]))
    # the same solutions as bare completions, the form a Programmer usually returns
    completions = asyncio.run(_score_all(scorer, [(t, t.answer) for t in tasks]))
    stubs = asyncio.run(_score_all(scorer, [(t, t.question + "    pass\n") for t in tasks]))
    seconds = time.monotonic() - start
    failed = [t.id for t, s in zip(tasks, canonical, strict=True) if s != 1.0]
    failed += [t.id for t, s in zip(tasks, completions, strict=True) if s != 1.0]
    passed = [t.id for t, s in zip(tasks, stubs, strict=True) if s != 0.0]
    assert not failed, f"canonical solutions failing their hidden tests: {failed}"
    assert not passed, f"`pass` stubs passing their hidden tests: {passed}"
    print(f"HumanEval: 164/164 canonical pass, 0/164 stubs pass, 492 runs in {seconds:.1f} s")
