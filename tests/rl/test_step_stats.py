"""`StepStats` and `Normalisers`: a minibatch split into micro-batches and ranks gives the loss and
statistics of the whole minibatch (sums stay sums, maxima stay maxima, means are token-weighted),
checked against a plain computation over the whole batch."""

from __future__ import annotations

import pytest
import torch

from flowsteer.rl.losses import LossStats, cwrpo_loss
from flowsteer.rl.update import Normalisers, StepStats

AGGS = ["token-mean", "seq-mean-token-mean", "seq-mean-token-sum-norm"]
PARTS = (slice(0, 2), slice(2, 3), slice(3, 6))  # micro-batches of 2, 1 and 3 rows


def _batch():
    gen = torch.Generator().manual_seed(3)
    shape = (6, 9)
    logprobs = -torch.rand(shape, generator=gen) * 3
    old = logprobs + 0.4 * torch.randn(shape, generator=gen)  # ratios far from 1: clips bind
    rollout = old + 0.2 * torch.randn(shape, generator=gen)
    entropy = torch.rand(shape, generator=gen)
    mask = (torch.rand(shape, generator=gen) > 0.4).long()
    mask[2] = 0  # a row without a trained token
    mask[4, :] = 1  # a long row, so token and sequence weighting differ
    advantages = torch.randn(6, generator=gen)
    return logprobs, old, rollout, entropy, mask, advantages


def _plain(loss_agg: str) -> dict[str, float]:
    """The whole batch's loss and statistics, written out with plain tensor ops."""
    logprobs, old, rollout, entropy, mask, advantages = _batch()
    m = mask.bool()
    ratio = torch.exp(logprobs - old)
    adv = advantages[:, None]
    pg = -torch.minimum(ratio * adv, ratio.clamp(0.8, 1.2) * adv)
    pg = torch.where(m, pg, 0.0)
    if loss_agg == "token-mean":
        pg_loss = pg.sum() / m.sum()
    else:
        has = m.sum(1) > 0
        per_row = m.sum(1).clamp(min=1) if loss_agg == "seq-mean-token-mean" else mask.shape[1]
        pg_loss = (pg.sum(1) / per_row)[has].sum() / has.sum()
    r = ratio[m]
    gap = (old - rollout)[m]
    return {
        "loss": float(pg_loss),
        "pg_loss": float(pg_loss),
        "num_tokens": float(m.sum()),
        "ratio_max": float(r.max()),
        "ratio_mean": float(r.mean()),
        "clip_frac_low": float(((r < 0.8) & (adv.expand_as(m)[m] < 0)).float().mean()),
        "clip_frac_high": float(((r > 1.2) & (adv.expand_as(m)[m] > 0)).float().mean()),
        "approx_kl_old": float((r - 1 - torch.log(r)).mean()),
        "mismatch_abs": float(gap.abs().mean()),
        "mismatch_kl": float((torch.expm1(gap) - gap).mean()),
        "entropy": float(entropy[m].mean()),
    }


def _part(rows: slice, loss_agg: str, norm: Normalisers | None):
    logprobs, old, rollout, entropy, mask, advantages = _batch()
    kwargs = {} if norm is None else norm.loss_kwargs(loss_agg)
    return cwrpo_loss(
        logprobs[rows],
        old[rows],
        advantages[rows],
        mask[rows],
        rollout_logprobs=rollout[rows],
        entropy=entropy[rows],
        loss_agg=loss_agg,
        **kwargs,
    )


def _norm() -> Normalisers:
    mask = _batch()[4]
    return Normalisers(int(mask.sum()), int((mask.sum(1) > 0).sum()), mask.shape[1])


@pytest.mark.parametrize("loss_agg", AGGS)
def test_micro_batches_combine_to_the_whole_batch_and_a_plain_computation(loss_agg) -> None:
    whole = StepStats()
    whole.add(_part(slice(0, 6), loss_agg, None))
    split = StepStats()
    for rows in PARTS:
        split.add(_part(rows, loss_agg, _norm()))
    expected = _plain(loss_agg)
    assert whole.result() == pytest.approx(expected, rel=1e-5, abs=1e-6)
    assert split.result() == pytest.approx(expected, rel=1e-5, abs=1e-6)
    assert expected["clip_frac_low"] > 0 and expected["clip_frac_high"] > 0  # the test has teeth


@pytest.mark.parametrize("loss_agg", AGGS)
def test_ranks_combine_with_one_sum_and_one_max_reduction(loss_agg) -> None:
    ranks = [StepStats(), StepStats(), StepStats()]
    for rows in PARTS[:2]:
        ranks[0].add(_part(rows, loss_agg, _norm()))
    ranks[1].add(_part(PARTS[2], loss_agg, _norm()))
    # A rank without rows runs a stand-in row for the collectives; it must weigh nothing.
    ranks[2].add(_part(slice(4, 5), loss_agg, _norm()), count=False)
    packed = [r.packed() for r in ranks]
    sums = torch.stack([s for s, _ in packed]).sum(0)
    maxes = torch.stack([m for _, m in packed]).amax(0)
    got = ranks[0].result(sums, maxes)
    assert got == pytest.approx(_plain(loss_agg), rel=1e-5, abs=1e-6)


def test_every_statistic_declares_its_reduction() -> None:
    reductions = LossStats.reductions()
    assert reductions["pg_loss"] == "sum" and reductions["num_tokens"] == "sum"
    assert reductions["ratio_max"] == "max"
    assert {n for n, r in reductions.items() if r == "mean"} == {
        "clip_frac_low",
        "clip_frac_high",
        "approx_kl_old",
        "ratio_mean",
        "kl_ref",
        "mismatch_abs",
        "mismatch_kl",
        "tis_weight_mean",
        "entropy",
    }


def test_normalisers_give_each_aggregation_its_keywords() -> None:
    norm = Normalisers(tokens=0, sequences=3, width=17)
    assert norm.loss_kwargs("token-mean") == {"num_tokens": 1}
    assert norm.loss_kwargs("seq-mean-token-mean") == {"num_sequences": 3}
    assert norm.loss_kwargs("seq-mean-token-sum-norm") == {"num_sequences": 3, "norm_length": 17}
