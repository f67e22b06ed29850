"""Code-reward throughput: HumanEval canonical solutions scored in the sandbox, in parallel.

Scores ``--candidates`` candidates (the 164 canonical solutions, repeated and shuffled with a
fixed seed) with `CodeAnswerScorer.score_async`, ``--in-flight`` at a time, and runs the very
same test programs (harness + prompt + solution + hidden tests) through a bare
``subprocess.run([sys.executable, "-c", program])``: once in a plain loop, and once with the
same concurrency, so the table shows what the sandbox's isolation costs per candidate (the
scorer starts TWO sandboxes per candidate: the candidate's, and the judge's that runs the
tests; the bare rows run one process with the tests inside, which a candidate could forge).
The sandbox starts Python with ``-I -S`` (no ``site`` import), which a bare ``python -c`` in a
virtual environment pays for; a fourth row runs the bare programs with ``-I -S`` to separate
the two. CPU milliseconds per candidate (this process and its children) are printed too: on
a shared machine they vary far less than the rates.

    python bench/rewards.py [--candidates 1000] [--in-flight 8] [--data ../shared/data]
"""

from __future__ import annotations

import argparse
import asyncio
import random
import resource
import subprocess
import sys
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from flowsteer.isolation.sandbox import sandbox_capabilities
from flowsteer.rewards import CodeAnswerScorer
from flowsteer.rewards.code_answer import build_test_program
from flowsteer.tasks import Task, load_tasks

SEED = 0
DEFAULT_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


def candidates(data: Path, n: int) -> list[tuple[Task, str]]:
    """``n`` (task, prompt + canonical solution) pairs, in a seeded shuffled order."""
    tasks = load_tasks("humaneval", data / "humaneval" / "HumanEval.jsonl.gz")
    pairs = [(t, t.question + t.answer) for t in tasks]
    pairs = (pairs * (n // len(pairs) + 1))[:n]
    random.Random(SEED).shuffle(pairs)
    return pairs


def _cpu_seconds() -> float:
    """CPU time of this process and its reaped children: load-independent, unlike wall time."""
    own, children = (
        resource.getrusage(w) for w in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN)
    )
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def measured(rate: Callable[..., float], *args: Any) -> tuple[float, float]:
    """(candidates per second, CPU milliseconds per candidate) of one row."""
    before = _cpu_seconds()
    per_second = rate(*args)
    return per_second, (_cpu_seconds() - before) * 1000 / len(args[0])


def sandbox_rate(pairs: list[tuple[Task, str]], in_flight: int) -> float:
    """Candidates per second through the scorer; every candidate must score 1.0."""
    scorer = CodeAnswerScorer(timeout=20.0)

    async def main() -> float:
        gate = asyncio.Semaphore(in_flight)

        async def one(task: Task, program: str) -> float:
            async with gate:
                return await scorer.score_async(task, program)

        start = time.perf_counter()
        scores = await asyncio.gather(*(one(t, p) for t, p in pairs))
        seconds = time.perf_counter() - start
        if any(s != 1.0 for s in scores):
            raise RuntimeError(f"{sum(s != 1.0 for s in scores)} canonical solutions failed")
        return len(pairs) / seconds

    return asyncio.run(main())


def _bare(program: str, flags: tuple[str, ...] = ()) -> None:
    done = subprocess.run([sys.executable, *flags, "-c", program], capture_output=True, timeout=60)
    if done.returncode != 0:
        raise RuntimeError(f"bare run failed: {done.stderr.decode()[-500:]}")


def bare_rate(pairs: list[tuple[Task, str]], in_flight: int, flags: tuple[str, ...] = ()) -> float:
    """Candidates per second running the same test programs with bare `subprocess.run`.

    ``flags`` go before ``-c``: ``("-I", "-S")`` starts the interpreter the way the sandbox
    does (no ``site`` import), which isolates the cost of the isolation itself.
    """
    programs = [build_test_program(t, p) for t, p in pairs]
    start = time.perf_counter()
    if in_flight == 1:
        for program in programs:
            _bare(program, flags)
    else:
        with ThreadPoolExecutor(in_flight) as pool:
            list(pool.map(lambda program: _bare(program, flags), programs))
    return len(programs) / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--candidates", type=int, default=1000)
    parser.add_argument("--in-flight", type=int, default=8)
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    args = parser.parse_args()
    if not (args.data / "humaneval" / "HumanEval.jsonl.gz").is_file():
        sys.exit(f"HumanEval not found under {args.data}; pass --data")
    pairs = candidates(args.data, args.candidates)
    caps = sandbox_capabilities()  # detected once; kept out of the timings
    loop, loop_cpu = measured(bare_rate, pairs, 1)
    rows = [
        ("bare subprocess.run loop", 1, loop, loop_cpu),
        ("bare subprocess.run", args.in_flight, *measured(bare_rate, pairs, args.in_flight)),
        ("bare, python -I -S", args.in_flight,
         *measured(bare_rate, pairs, args.in_flight, ("-I", "-S"))),
        ("CodeAnswerScorer (sandbox)", args.in_flight,
         *measured(sandbox_rate, pairs, args.in_flight)),
    ]  # fmt: skip
    print(f"{args.candidates} HumanEval candidates, sandbox mode {caps.mode!r}")
    print(f"{'how':<28}{'in flight':>10}{'cand/s':>10}{'vs loop':>10}{'CPU ms/cand':>13}")
    for name, flight, rate, cpu in rows:
        print(f"{name:<28}{flight:>10}{rate:>10.1f}{rate / loop:>9.2f}x{cpu:>13.1f}")
    bare_parallel, bare_no_site, sandboxed = (row[2] for row in rows[1:])
    print(f"sandbox / bare at the same concurrency: {sandboxed / bare_parallel:.2f}x")
    print(f"sandbox / bare -I -S (the isolation alone): {sandboxed / bare_no_site:.2f}x")


if __name__ == "__main__":
    main()
