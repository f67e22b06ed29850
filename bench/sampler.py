"""One sampling step of `HFEngine`: the sort-free `RowSampler` against the sort-every-row sampler
it replaced, at Qwen3's 151,936-token vocabulary and at the tiny policy's.

Each call samples one token for every row of a ``[rows, vocab]`` float32 logits batch with
per-row seeds, as `HFEngine`'s logits processor does for every generated token. ``sort`` is the
former algorithm (full descending sort of each row, top-k/top-p masks on the sorted row, inverse
CDF, one generator call per row in a Python loop); ``new`` is `flowsteer.rollout.row_sampler`.
Settings: ``plain`` (top-k 0, top-p 1, what the trainer samples), ``top-k 50``, ``top-p 0.9``.
Logits: ``peaked`` (log-Zipf over a random permutation of the vocabulary, exponent 1.2, like a
language model's next-token distribution: a top-p 0.9 nucleus of a few hundred tokens) and
``flat`` (standard normal times 3: a nucleus of tens of thousands of tokens, the worst case for
top-p, which then needs the full sort). Time: median of ``--repeats`` calls after one warm-up,
on ``--threads`` threads.

    python bench/sampler.py [--rows 32] [--threads 1] [--repeats 20]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from flowsteer.rollout.row_sampler import RowSampler

SETTINGS = {"plain": (0, 1.0), "top-k 50": (50, 1.0), "top-p 0.9": (0, 0.9)}


def sort_sampler(logits, top_k, top_p, generators):
    """The former per-step sampler (every row fully sorted), for comparison only."""
    sorted_logits, order = logits.sort(dim=-1, descending=True)
    rank = torch.arange(logits.shape[1])[None, :]
    drop = (top_k[:, None] > 0) & (rank >= top_k[:, None])
    probs = sorted_logits.masked_fill(drop, float("-inf")).softmax(dim=-1)
    before = probs.cumsum(dim=-1) - probs
    probs = probs.masked_fill((before >= top_p[:, None]) & (rank > 0), 0.0)
    cdf = probs.cumsum(dim=-1)
    u = torch.stack([torch.rand((), generator=g) for g in generators])
    pick = torch.searchsorted(cdf, (u * cdf[:, -1])[:, None]).clamp_max(cdf.shape[1] - 1)
    return order.gather(1, pick).squeeze(1)


def make_logits(rows: int, vocab: int, shape: str) -> torch.Tensor:
    generator = torch.Generator().manual_seed(0)
    if shape == "flat":
        return torch.randn(rows, vocab, generator=generator) * 3
    ranks = torch.arange(1, vocab + 1, dtype=torch.float32)
    out = torch.empty(rows, vocab)
    for row in range(rows):
        out[row, torch.randperm(vocab, generator=generator)] = -1.2 * ranks.log()
    return out


def median_ms(fn, repeats: int) -> float:
    fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return 1000 * statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=32)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--vocab", type=int, nargs="+", default=[151_936, 1_024])
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(f"rows {args.rows}, threads {args.threads}, median of {args.repeats} calls (ms)\n")
    print("| vocab | logits | setting | sort (before) | row sampler (now) | speed-up |")
    print("|---:|---|---|---:|---:|---:|")
    for vocab, shape in [(v, s) for v in args.vocab for s in ("peaked", "flat")]:
        logits = make_logits(args.rows, vocab, shape)
        for name, (k, p) in SETTINGS.items():
            if shape == "flat" and name == "plain":
                continue  # plain sampling does not depend on the shape
            top_k = torch.full((args.rows,), k, dtype=torch.long)
            top_p = torch.full((args.rows,), p)
            generators = [torch.Generator().manual_seed(i) for i in range(args.rows)]
            sampler = RowSampler(
                [1.0] * args.rows, [k] * args.rows, [p] * args.rows, range(args.rows)
            )
            step = iter(range(10**9))
            old = median_ms(
                lambda x=logits, k=top_k, p=top_p, g=generators: sort_sampler(x, k, p, g),
                args.repeats,
            )
            new = median_ms(lambda x=logits, s=sampler, i=step: s.sample(x, next(i)), args.repeats)
            print(f"| {vocab:,} | {shape} | {name} | {old:.1f} | {new:.1f} | {old / new:.1f}x |")


if __name__ == "__main__":
    main()
