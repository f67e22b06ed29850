"""`RowSampler`: one sampling step for a batch whose rows each have their own settings and seed.

What sampling costs, and no more. A plain row (no top-k, no top-p) is drawn by inverse CDF over
the vocabulary in its own order: one softmax and one cumulative sum, no sort (sorting a 151,936
wide row for every token is most of a CPU rollout's time otherwise). Top-k takes a partial sort
(``topk``) of k entries; top-p looks for the nucleus in the top ``NUCLEUS_PREFIX`` tokens and
sorts the whole row only when the nucleus is wider than that.

Every row's uniform draw is a counter-based hash of (its seed, its step), computed for all rows
at once: a seeded request reproduces the same tokens whatever else is in its batch and in
whatever order, with no per-row generator call in a Python loop.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

NUCLEUS_PREFIX = 1024
"""Tokens searched for a top-p nucleus before falling back to a full sort of the row."""

_MASK64 = (1 << 64) - 1


def _to_signed(value: int) -> int:
    value &= _MASK64
    return value - (1 << 64) if value >= 1 << 63 else value


_GOLDEN = _to_signed(0x9E3779B97F4A7C15)
_MIX1 = _to_signed(0xBF58476D1CE4E5B9)
_MIX2 = _to_signed(0x94D049BB133111EB)


def _shr(x: Tensor, bits: int) -> Tensor:
    """Logical right shift of int64 (torch's ``>>`` is arithmetic on negative values)."""
    return (x >> bits) & ((1 << (64 - bits)) - 1)


def _mix(x: Tensor) -> Tensor:
    """SplitMix64's finaliser: a bijection of int64 that scatters nearby inputs."""
    x = (x ^ _shr(x, 30)) * _MIX1
    x = (x ^ _shr(x, 27)) * _MIX2
    return x ^ _shr(x, 31)


def uniforms(seeds: Tensor, steps: Tensor) -> Tensor:
    """``[B]`` float64 uniforms in [0, 1) from SplitMix64 per row: state ``mix(seed)``, then
    ``step + 1`` increments of φ, then the finaliser.

    The seed is mixed before the step is added, so nearby seeds (0, 1, 2, ...) start far apart
    and their streams are not shifted copies of one another.

    Args:
        seeds: ``[B]`` int64 seeds.
        steps: ``[B]`` int64 counters (the row's decoding step).
    """
    x = _mix(seeds * _GOLDEN) + (steps + 1) * _GOLDEN  # int64 arithmetic wraps, as SplitMix64's
    return _shr(_mix(x), 11).double() / float(1 << 53)  # the top 53 bits: exact in float64


class RowSampler:
    """Samples one token per row from ``logits / temperature`` with per-row top-k and top-p.

    Args:
        temperature: ``[B]``; 0 means greedy (argmax).
        top_k: ``[B]`` long; 0 means off.
        top_p: ``[B]``; 1 means off.
        seeds: One seed per row; ``None`` rows draw theirs from torch's global generator.
    """

    def __init__(
        self,
        temperature: Sequence[float],
        top_k: Sequence[int],
        top_p: Sequence[float],
        seeds: Sequence[int | None],
    ) -> None:
        self.temperature = torch.tensor(list(temperature), dtype=torch.float32)
        self.top_k = torch.tensor(list(top_k), dtype=torch.long)
        self.top_p = torch.tensor(list(top_p), dtype=torch.float32)
        self.greedy = self.temperature <= 0
        self.seeds = torch.tensor(
            [int(s) if s is not None else int(torch.randint(0, 2**62, ()).item()) for s in seeds],
            dtype=torch.long,
        )
        truncated = ((self.top_k > 0) | (self.top_p < 1.0)) & ~self.greedy
        self.truncated_rows = truncated.nonzero().flatten().tolist()
        self.plain_rows = (~truncated & ~self.greedy).nonzero().flatten().tolist()

    def select(self, rows: Tensor) -> RowSampler:
        """The sampler of a subset of the rows (``rows``: ``[R]`` indices), seeds kept."""
        return RowSampler(
            self.temperature[rows].tolist(),
            self.top_k[rows].tolist(),
            self.top_p[rows].tolist(),
            self.seeds[rows].tolist(),
        )

    def tempered(self, logits: Tensor) -> Tensor:
        """``[B, V]`` logits divided by each row's temperature (greedy rows: 1)."""
        return logits / torch.where(self.greedy, 1.0, self.temperature)[:, None]

    def sample(self, scaled: Tensor, step: int) -> Tensor:
        """``[B]`` token ids drawn from the tempered (and possibly masked) logits ``[B, V]``."""
        u = uniforms(self.seeds, torch.full_like(self.seeds, step))  # [B] float64
        chosen = scaled.argmax(dim=-1)  # greedy rows keep it
        if self.plain_rows:
            plain = torch.tensor(self.plain_rows)
            probs = scaled[plain].softmax(dim=-1)  # [P, V]
            cdf = probs.double().cumsum(dim=-1)  # vocabulary order, no sort
            target = (u[plain] * cdf[:, -1])[:, None]
            picked = torch.searchsorted(cdf, target).squeeze(1).clamp_max(scaled.shape[1] - 1)
            chosen[plain] = _skip_zero_mass(picked, probs)
        if self.truncated_rows:
            rows = torch.tensor(self.truncated_rows)
            chosen[rows] = _truncated(scaled[rows], self.top_k[rows], self.top_p[rows], u[rows])
        return chosen


def _truncated(
    logits: Tensor,
    top_k: Tensor,
    top_p: Tensor,
    u: Tensor,
    prefix: int | None = None,
) -> Tensor:
    """``[R]`` draws under top-k, then top-p over the renormalised top-k survivors.

    Only the ``width`` largest logits of each row are sorted (``topk``): the largest k among
    the top-k rows, and ``NUCLEUS_PREFIX`` for top-p; rows whose nucleus is wider than that are
    drawn again from a full sort.
    """
    vocab = logits.shape[1]
    k = torch.where(top_k > 0, top_k, vocab).clamp_max(vocab)  # [R]
    nucleus = top_p < 1.0
    width = int(k[top_k > 0].max()) if bool((top_k > 0).any()) else 0
    if bool((nucleus & (top_k <= 0)).any()):
        width = max(width, NUCLEUS_PREFIX if prefix is None else prefix)
    width = min(max(width, 1), vocab)
    if width == vocab:
        values, order = logits.sort(dim=-1, descending=True)  # cheaper than a full topk
    else:
        values, order = logits.topk(width, dim=-1)  # [R, W], descending
    rank = torch.arange(width)[None, :]
    in_k = rank < k[:, None]  # [R, W]
    renormalised = values.masked_fill(~in_k, float("-inf")).softmax(dim=-1)
    # Rows without top-k: the full distribution's probabilities of the sorted prefix.
    full = (values - logits.logsumexp(dim=-1, keepdim=True)).exp()
    kept = torch.where((top_k > 0)[:, None], renormalised, full)
    cdf = kept.cumsum(dim=-1)
    keep = in_k & ((cdf - kept < top_p[:, None]) | (rank == 0))  # mass strictly above < p
    kept = kept.masked_fill(~keep, 0.0)
    cdf = torch.where(keep, cdf, cdf.new_zeros(())).cummax(dim=-1).values  # flat past the cut
    target = (u.float() * cdf[:, -1])[:, None]
    pick = torch.searchsorted(cdf, target).clamp_max(width - 1)  # [R, 1]
    landed = kept.gather(1, pick) > 0
    pick = torch.where(landed, pick, torch.zeros_like(pick))  # a float-boundary draw: the top
    chosen = order.gather(1, pick).squeeze(1)
    # The nucleus ran past the sorted prefix (and past no k): draw those rows from a full sort.
    wider = nucleus & keep[:, -1] & (k > width)
    if bool(wider.any()):
        chosen[wider] = _truncated(
            logits[wider], top_k[wider], top_p[wider], u[wider], prefix=vocab
        )
    return chosen


def _skip_zero_mass(chosen: Tensor, probs: Tensor) -> Tensor:
    """Guard against a draw landing on a zero-probability token (u at a float boundary)."""
    bad = probs.gather(1, chosen[:, None]).squeeze(1) == 0
    if bad.any():
        chosen = chosen.clone()
        chosen[bad] = probs[bad].argmax(dim=-1)
    return chosen


__all__ = ["NUCLEUS_PREFIX", "RowSampler", "uniforms"]
