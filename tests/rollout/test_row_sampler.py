"""`RowSampler` draws from the right distribution (plain, top-k, top-p, a nucleus wider than the
searched prefix), greedily where asked, with per-row streams that depend only on seed and step."""

from __future__ import annotations

import pytest
import torch

import flowsteer.rollout.row_sampler as row_sampler
from flowsteer.rollout.row_sampler import RowSampler, uniforms

DRAWS = 6000


def _frequencies(sampler: RowSampler, logits: torch.Tensor, row: int = 0) -> torch.Tensor:
    counts = torch.zeros(logits.shape[1])
    for step in range(DRAWS):
        counts[int(sampler.sample(logits, step)[row])] += 1
    return counts / DRAWS


def _expected(logits: torch.Tensor, top_k: int = 0, top_p: float = 1.0) -> torch.Tensor:
    """The reference: sort, keep the top k, renormalise, keep the nucleus, renormalise."""
    values, order = logits.sort(descending=True)
    if top_k:
        values[top_k:] = float("-inf")
    probs = values.softmax(-1)
    before = probs.cumsum(-1) - probs
    probs[(before >= top_p) & (torch.arange(len(probs)) > 0)] = 0
    out = torch.zeros_like(probs)
    out[order] = probs / probs.sum()
    return out


def test_uniforms_are_uniform_and_a_function_of_seed_and_step() -> None:
    steps = torch.arange(20000)
    u = uniforms(torch.full_like(steps, 7), steps)
    assert u.min() >= 0 and u.max() < 1
    # Kolmogorov-Smirnov distance against U(0, 1): about 0.01 at this size.
    ks = (u.sort().values - (torch.arange(len(u)) + 0.5) / len(u)).abs().max()
    assert ks < 0.015
    assert torch.equal(u[:5], uniforms(torch.full((5,), 7), torch.arange(5)))
    other = uniforms(torch.full_like(steps, 8), steps)
    assert not torch.equal(u, other)
    assert abs(torch.corrcoef(torch.stack([u, other]))[0, 1]) < 0.03


def test_nearby_seeds_give_independent_streams() -> None:
    """Seeds 0, 1, 2, ... (what a user passes): the grid of every seed's first steps is as
    uniform as one long stream, with no value repeated; no stream is another's shifted copy."""
    seeds = torch.arange(200).repeat_interleave(100)
    steps = torch.arange(100).repeat(200)
    u = uniforms(seeds, steps)
    assert len(torch.unique(u)) == len(u)
    ks = (u.sort().values - (torch.arange(len(u)) + 0.5) / len(u)).abs().max()
    assert ks < 0.015
    grid = u.view(200, 100)
    assert not torch.isin(grid[1, :-1], grid[0]).any()  # seed 1 is not seed 0 one step on
    assert abs(torch.corrcoef(torch.stack([grid[0, 1:], grid[1, :-1]]))[0, 1]) < 0.35


LOGITS = torch.tensor([[2.0, 1.0, 0.5, 0.0, -1.0, 1.5, -0.5, 0.2]])


@pytest.mark.parametrize(
    ("top_k", "top_p"), [(0, 1.0), (3, 1.0), (0, 0.7), (4, 0.8), (1, 1.0), (0, 0.0)]
)
def test_draws_follow_the_truncated_tempered_distribution(top_k: int, top_p: float) -> None:
    sampler = RowSampler([0.7], [top_k], [top_p], [123])
    scaled = sampler.tempered(LOGITS)
    expected = _expected(scaled[0].clone(), top_k, top_p)
    measured = _frequencies(sampler, scaled)
    assert torch.all(measured[expected == 0] == 0)  # never outside the kept set
    torch.testing.assert_close(measured, expected, atol=0.025, rtol=0)


def test_a_nucleus_wider_than_the_searched_prefix_falls_back(monkeypatch) -> None:
    monkeypatch.setattr(row_sampler, "NUCLEUS_PREFIX", 2)
    logits = torch.linspace(0.5, 0.0, 16)[None, :]
    sampler = RowSampler([1.0], [0], [0.9], [5])
    expected = _expected(logits[0].clone(), 0, 0.9)
    assert (expected > 0).sum() > 8  # much wider than the prefix of 2
    torch.testing.assert_close(_frequencies(sampler, logits), expected, atol=0.025, rtol=0)


def test_greedy_rows_take_the_argmax_beside_sampled_rows() -> None:
    logits = LOGITS.repeat(2, 1)
    sampler = RowSampler([0.0, 1.0], [0, 0], [1.0, 1.0], [1, 1])
    picks = [sampler.sample(logits, step) for step in range(50)]
    assert all(int(p[0]) == 0 for p in picks)
    assert len({int(p[1]) for p in picks}) > 2


def test_a_rows_stream_does_not_depend_on_its_batch() -> None:
    vocab = 1000
    torch.manual_seed(0)
    logits = torch.randn(3, vocab)
    alone = RowSampler([1.0], [0], [0.9], [42])
    batched = RowSampler([1.0, 0.5, 1.0], [0, 5, 0], [1.0, 1.0, 0.9], [9, None, 42])
    for step in range(20):
        assert int(alone.sample(logits[2:3], step)[0]) == int(batched.sample(logits, step)[2])


def test_masked_tokens_are_never_drawn() -> None:
    logits = LOGITS.clone()
    logits[0, [0, 5]] = float("-inf")
    sampler = RowSampler([1.0], [0], [1.0], [3])
    assert all(int(sampler.sample(logits, s)[0]) not in (0, 5) for s in range(2000))
