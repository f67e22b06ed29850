"""Sandbox throughput: runs per second of a trivial program with several runs in flight.

Compares `flowsteer.isolation.sandbox.run_python_async` with a bare `subprocess.run([python, "-c", code])`
on the same number of threads, so the table shows what the isolation costs per run.

    python bench/sandbox.py [--runs 200] [--in-flight 8]
"""

from __future__ import annotations

import argparse
import asyncio
import random
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor

from flowsteer.isolation.sandbox import run_python_async, sandbox_capabilities

SEED = 0


def _programs(n: int) -> list[str]:
    rng = random.Random(SEED)
    return [f"def solve():\n    return {rng.randint(0, 10**6)} + 1\nsolve()" for _ in range(n)]


def sandbox_runs_per_second(n: int = 200, in_flight: int = 8) -> float:
    """Sandbox runs per second of a trivial program, `in_flight` at a time.

    Args:
        n: Number of runs.
        in_flight: How many run concurrently.

    Returns:
        Completed runs per second of wall time (every run must succeed).
    """
    programs = _programs(n)
    sandbox_capabilities()  # detection happens once; keep it out of the timing

    async def main() -> float:
        gate = asyncio.Semaphore(in_flight)

        async def one(code: str) -> None:
            async with gate:
                result = await run_python_async(code, timeout=10)
            if result.status != "ok":
                raise RuntimeError(f"sandbox run failed: {result}")

        start = time.perf_counter()
        await asyncio.gather(*(one(code) for code in programs))
        return n / (time.perf_counter() - start)

    return asyncio.run(main())


def bare_runs_per_second(n: int = 200, in_flight: int = 8) -> float:
    """The same programs through a bare `subprocess.run([sys.executable, "-c", code])`."""
    programs = [code.replace("\nsolve()", "\nprint(solve())") for code in _programs(n)]

    def one(code: str) -> None:
        subprocess.run([sys.executable, "-c", code], check=True, capture_output=True)

    start = time.perf_counter()
    with ThreadPoolExecutor(in_flight) as pool:
        list(pool.map(one, programs))
    return n / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=200)
    parser.add_argument("--in-flight", type=int, default=8)
    args = parser.parse_args()
    caps = sandbox_capabilities()
    sandboxed = sandbox_runs_per_second(args.runs, args.in_flight)
    bare = bare_runs_per_second(args.runs, args.in_flight)
    print(
        f"sandbox mode: {caps.mode} ({caps.interpreter}); {args.runs} runs, {args.in_flight} in flight"
    )
    print(f"{'':<28}{'runs/s':>10}{'ms/run':>10}")
    print(f"{'flowsteer.isolation.sandbox':<28}{sandboxed:>10.1f}{1000 / sandboxed:>10.2f}")
    print(f"{'bare subprocess.run':<28}{bare:>10.1f}{1000 / bare:>10.2f}")
    print(f"{'ratio (sandbox / bare)':<28}{sandboxed / bare:>10.2f}")


if __name__ == "__main__":
    main()
