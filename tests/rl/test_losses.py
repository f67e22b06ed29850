"""`cwrpo_loss` against hand-computed numbers, its masking, micro-batching and statistics."""

from __future__ import annotations

import math

import pytest
import torch

from flowsteer.rl.losses import cwrpo_loss, kl_penalty

LN2 = math.log(2.0)


def _two_sequences():
    """B=2, T=4; old log-probs 0, so ρ = exp(logprobs). Masked positions hold garbage.

    seq 0 (A = +1), mask [0, 1, 1, 0], ρ = [·, 1.5, 0.5, ·]:
        t1: min(1.5·1, clip(1.5)=1.2·1) = 1.2  → ℓ = −1.2   (high clip binds: no gradient)
        t2: min(0.5·1, clip(0.5)=0.8·1) = 0.5  → ℓ = −0.5
    seq 1 (A = −2), mask [0, 1, 1, 1], ρ = [·, 1.1, 0.7, 1.0]:
        t1: min(1.1·−2, 1.1·−2) = −2.2          → ℓ = 2.2
        t2: min(0.7·−2, clip(0.7)=0.8·−2) = −1.6 → ℓ = 1.6   (low clip binds: no gradient)
        t3: min(1.0·−2, 1.0·−2) = −2.0          → ℓ = 2.0
    """
    nan = float("nan")
    logprobs = torch.tensor(
        [
            [nan, math.log(1.5), math.log(0.5), 50.0],
            [123.0, math.log(1.1), math.log(0.7), 0.0],
        ],
        requires_grad=True,
    )
    old = torch.tensor([[-math.inf, 0.0, 0.0, nan], [0.0, 0.0, 0.0, 0.0]])
    mask = torch.tensor([[0, 1, 1, 0], [0, 1, 1, 1]])
    advantages = torch.tensor([1.0, -2.0])
    return logprobs, old, advantages, mask


@pytest.mark.parametrize(
    ("loss_agg", "expected"),
    [
        # (−1.2 − 0.5 + 2.2 + 1.6 + 2.0) / 5 tokens = 4.1 / 5
        ("token-mean", 0.82),
        # seq means: (−1.2 − 0.5)/2 = −0.85 and (2.2 + 1.6 + 2.0)/3 = 1.9333…; their mean
        ("seq-mean-token-mean", (-0.85 + 5.8 / 3) / 2),
        # seq sums over T = 4: −1.7/4 = −0.425 and 5.8/4 = 1.45; their mean = 0.5125
        ("seq-mean-token-sum-norm", 0.5125),
    ],
)
def test_clipped_surrogate_for_each_aggregation(loss_agg, expected):
    logprobs, old, advantages, mask = _two_sequences()
    out = cwrpo_loss(logprobs, old, advantages, mask, loss_agg=loss_agg)
    assert out.loss.item() == pytest.approx(expected, abs=1e-6)
    assert out.stats.pg_loss.item() == pytest.approx(expected, abs=1e-6)


def test_token_mean_gradient_flows_only_through_unclipped_mask_tokens():
    logprobs, old, advantages, mask = _two_sequences()
    cwrpo_loss(logprobs, old, advantages, mask).loss.backward()
    # dℓ/dlogπ = −A·ρ / N where the unclipped term is the min, 0 where the clip binds or mask 0:
    # seq 0: t1 clipped → 0; t2: −1·0.5/5 = −0.1.  seq 1: t1: 2·1.1/5 = 0.44; t2 clipped → 0;
    # t3: 2·1.0/5 = 0.4.
    expected = torch.tensor([[0.0, 0.0, -0.1, 0.0], [0.0, 0.44, 0.0, 0.4]])
    torch.testing.assert_close(logprobs.grad, expected, atol=1e-6, rtol=0)


def test_clip_and_ratio_statistics():
    logprobs, old, advantages, mask = _two_sequences()
    stats = cwrpo_loss(logprobs, old, advantages, mask).stats
    assert stats.num_tokens.item() == 5
    assert stats.clip_frac_high.item() == pytest.approx(1 / 5)  # seq 0 t1: ρ 1.5 > 1.2, A > 0
    assert stats.clip_frac_low.item() == pytest.approx(1 / 5)  # seq 1 t2: ρ 0.7 < 0.8, A < 0
    assert stats.ratio_mean.item() == pytest.approx((1.5 + 0.5 + 1.1 + 0.7 + 1.0) / 5)
    # the garbage e^50 at a masked slot is not seen
    assert stats.ratio_max.item() == pytest.approx(1.5)
    # KL(old‖θ) k3 per token: (ρ − 1) − log ρ
    k3 = [(r - 1) - math.log(r) for r in (1.5, 0.5, 1.1, 0.7, 1.0)]
    assert stats.approx_kl_old.item() == pytest.approx(sum(k3) / 5, abs=1e-6)
    assert stats.kl_ref is None and stats.mismatch_abs is None and stats.entropy is None
    logged = stats.to_dict()
    assert logged["loss/clip_frac_low"] == pytest.approx(0.2)
    assert logged["loss/num_tokens"] == 5.0
    assert "loss/kl_ref" not in logged and all(isinstance(v, float) for v in logged.values())


def _kl_case():
    """One sequence, A = 0 (no policy-gradient term), δ = log π_ref − log π = [ln 2, ln 4]."""
    logprobs = torch.tensor([[-1.0, -2.0, -0.5]], requires_grad=True)
    ref = torch.tensor([[-1.0 + LN2, -2.0 + 2 * LN2, 7.0]])
    mask = torch.tensor([[1, 1, 0]])
    return logprobs, logprobs.detach().clone(), torch.zeros(1), mask, ref


@pytest.mark.parametrize(
    ("estimator", "per_token_mean", "grad"),
    [
        # k1 = log π − log π_ref = −δ = [−ln 2, −2 ln 2]; mean −1.5 ln 2; dk1/dlogπ = 1
        ("k1", -1.5 * LN2, [1.0, 1.0]),
        # k2 = ½δ² = [½ ln²2, 2 ln²2]; mean 1.25 ln²2; dk2/dlogπ = −δ
        ("k2", 1.25 * LN2**2, [-LN2, -2 * LN2]),
        # k3 = e^δ − δ − 1 = [1 − ln 2, 3 − 2 ln 2]; mean 2 − 1.5 ln 2; dk3/dlogπ = 1 − e^δ
        ("k3", 2 - 1.5 * LN2, [1 - 2.0, 1 - 4.0]),
    ],
)
def test_kl_estimators(estimator, per_token_mean, grad):
    logprobs, old, advantages, mask, ref = _kl_case()
    out = cwrpo_loss(
        logprobs, old, advantages, mask, ref_logprobs=ref, kl_coef=0.1, kl_estimator=estimator
    )
    # loss = β · token-mean(k) = 0.1 · mean
    assert out.loss.item() == pytest.approx(0.1 * per_token_mean, abs=1e-6)
    assert out.stats.kl_ref.item() == pytest.approx(per_token_mean, abs=1e-6)
    out.loss.backward()
    # d loss / dlogπ_t = β · dk/dlogπ_t / N, N = 2
    expected = torch.tensor([[0.1 * grad[0] / 2, 0.1 * grad[1] / 2, 0.0]])
    torch.testing.assert_close(logprobs.grad, expected, atol=1e-6, rtol=0)


def test_kl_is_reported_but_not_added_when_its_coefficient_is_zero():
    logprobs, old, advantages, mask, ref = _kl_case()
    out = cwrpo_loss(logprobs, old, advantages, mask, ref_logprobs=ref)
    assert out.loss.item() == 0.0
    assert out.stats.kl_ref.item() == pytest.approx(2 - 1.5 * LN2, abs=1e-6)


def test_kl_penalty_adds_to_the_surrogate():
    logprobs, old, _, mask, ref = _kl_case()
    # A = 1, ρ = 1 on both tokens → ℓ_pg = −1 each; k3 mean 2 − 1.5 ln 2 → total −1 + 0.5·(…)
    out = cwrpo_loss(logprobs, old, torch.ones(1), mask, ref_logprobs=ref, kl_coef=0.5)
    assert out.loss.item() == pytest.approx(-1 + 0.5 * (2 - 1.5 * LN2), abs=1e-6)
    assert out.stats.pg_loss.item() == pytest.approx(-1.0)


def test_kl_penalty_rejects_unknown_estimators():
    with pytest.raises(ValueError, match="kl_estimator"):
        kl_penalty(torch.zeros(1, 1), torch.zeros(1, 1), "k4")


def test_truncated_importance_sampling():
    # old = 0, ρ = [1.1, 0.9], A = 1 → surrogate terms −1.1 and −0.9 (no clip binds).
    # rollout = [−ln 2, +ln 2] → exp(old − rollout) = [2, 0.5] → capped at 1.5: w = [1.5, 0.5].
    # ℓ = [−1.65, −0.45]; token-mean = −1.05.
    logprobs = torch.tensor([[math.log(1.1), math.log(0.9)]], requires_grad=True)
    old = torch.zeros(1, 2)
    rollout = torch.tensor([[-LN2, LN2]])
    mask = torch.ones(1, 2)
    out = cwrpo_loss(logprobs, old, torch.ones(1), mask, rollout_logprobs=rollout, tis_cap=1.5)
    assert out.loss.item() == pytest.approx(-1.05, abs=1e-6)
    out.loss.backward()
    # weights are detached: dℓ/dlogπ = −w·ρ·A / N = [−1.5·1.1/2, −0.5·0.9/2]
    torch.testing.assert_close(logprobs.grad, torch.tensor([[-0.825, -0.225]]))
    assert out.stats.tis_weight_mean.item() == pytest.approx(1.0)
    assert out.stats.mismatch_abs.item() == pytest.approx(LN2)
    # KL(rollout‖old), k3 of old − rollout = [ln 2, −ln 2]: [1 − ln 2, ln 2 − ½]; mean ¼
    assert out.stats.mismatch_kl.item() == pytest.approx(0.25, abs=1e-6)
    # Without tis_cap, the rollout log-probs only feed the mismatch statistics.
    plain = cwrpo_loss(logprobs, old, torch.ones(1), mask, rollout_logprobs=rollout)
    assert plain.loss.item() == pytest.approx(-1.0, abs=1e-6)
    assert plain.stats.tis_weight_mean is None and plain.stats.mismatch_abs is not None


def _random_batch(seed: int, batch: int = 6, length: int = 9):
    gen = torch.Generator().manual_seed(seed)
    logprobs = (-torch.rand(batch, length, generator=gen) * 3).requires_grad_()
    old = logprobs.detach() + 0.3 * torch.randn(batch, length, generator=gen)
    ref = logprobs.detach() + 0.3 * torch.randn(batch, length, generator=gen)
    mask = (torch.rand(batch, length, generator=gen) > 0.4).long()
    mask[2] = 0  # a sequence without a single policy token
    advantages = torch.randn(batch, generator=gen)
    return logprobs, old, advantages, mask, ref


@pytest.mark.parametrize(
    "loss_agg", ["token-mean", "seq-mean-token-mean", "seq-mean-token-sum-norm"]
)
def test_micro_batches_with_global_normalisers_sum_to_the_full_batch(loss_agg):
    logprobs, old, advantages, mask, ref = _random_batch(0)
    common = dict(ref_logprobs=ref, kl_coef=0.05, loss_agg=loss_agg, clip_eps_high=0.28)
    full = cwrpo_loss(logprobs, old, advantages, mask, **common).loss
    (full_grad,) = torch.autograd.grad(full, logprobs)

    if loss_agg == "token-mean":
        normaliser = {"num_tokens": int(mask.sum())}
    else:
        normaliser = {"num_sequences": int((mask.sum(-1) > 0).sum())}
        if loss_agg == "seq-mean-token-sum-norm":
            normaliser["norm_length"] = mask.shape[1]
    summed, naive = 0.0, 0.0
    for rows in (slice(0, 2), slice(2, 3), slice(3, 6)):
        # Each micro-batch is cut to its own last mask-1 column, as a collator pads it.
        cols = mask[rows].sum(0).nonzero()
        width = int(cols.max()) + 1 if cols.numel() else 1
        args = (
            logprobs[rows, :width],
            old[rows, :width],
            advantages[rows],
            mask[rows, :width],
        )
        part = {**common, "ref_logprobs": ref[rows, :width]}
        summed = summed + cwrpo_loss(*args, **part, **normaliser).loss
        naive += cwrpo_loss(*args, **part).loss.item()
    (summed_grad,) = torch.autograd.grad(summed, logprobs)
    assert summed.item() == pytest.approx(full.item(), abs=1e-6)
    torch.testing.assert_close(summed_grad, full_grad, atol=1e-7, rtol=1e-5)
    # The normalisers matter: micro-batch means summed without them are a different number.
    assert naive != pytest.approx(full.item(), abs=1e-3)


def test_masked_tokens_get_exactly_zero_gradient_and_empty_masks_no_nan():
    logprobs, old, advantages, mask, ref = _random_batch(1)
    for loss_agg in ("token-mean", "seq-mean-token-mean", "seq-mean-token-sum-norm"):
        out = cwrpo_loss(
            logprobs, old, advantages, mask, ref_logprobs=ref, kl_coef=0.1, loss_agg=loss_agg
        )
        (grad,) = torch.autograd.grad(out.loss, logprobs)
        assert torch.all(grad[mask == 0] == 0)
        assert torch.all(grad[mask == 1] != 0)
        assert torch.all(grad[2] == 0)  # the sequence with no mask tokens
    empty = torch.zeros_like(mask)
    for loss_agg in ("token-mean", "seq-mean-token-mean", "seq-mean-token-sum-norm"):
        out = cwrpo_loss(
            logprobs, old, advantages, empty, ref_logprobs=ref, kl_coef=0.1, loss_agg=loss_agg
        )
        (grad,) = torch.autograd.grad(out.loss, logprobs)
        assert out.loss.item() == 0.0 and torch.all(grad == 0)
        assert all(math.isfinite(v) for v in out.stats.to_dict().values())


def test_a_sequence_without_mask_tokens_does_not_dilute_the_sequence_mean():
    logprobs, old, advantages, mask, _ = _random_batch(2)
    with_empty = cwrpo_loss(logprobs, old, advantages, mask, loss_agg="seq-mean-token-mean")
    rows = [0, 1, 3, 4, 5]
    without = cwrpo_loss(
        logprobs[rows], old[rows], advantages[rows], mask[rows], loss_agg="seq-mean-token-mean"
    )
    assert with_empty.loss.item() == pytest.approx(without.loss.item(), abs=1e-7)


def test_entropy_statistic_averages_mask_tokens_only():
    logprobs, old, advantages, mask = _two_sequences()
    entropy = torch.tensor([[9.0, 1.0, 2.0, float("nan")], [9.0, 3.0, 4.0, 5.0]])
    stats = cwrpo_loss(logprobs, old, advantages, mask, entropy=entropy).stats
    assert stats.entropy.item() == pytest.approx((1 + 2 + 3 + 4 + 5) / 5)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"kl_coef": 0.1}, "needs ref_logprobs"),
        ({"tis_cap": 2.0}, "rollout_logprobs"),
        ({"loss_agg": "sum"}, "loss_agg"),
        ({"kl_estimator": "k9"}, "kl_estimator"),
        ({"loss_agg": "seq-mean-token-mean", "num_tokens": 5}, "num_tokens normalises"),
        ({"num_sequences": 2}, "num_sequences applies"),
        ({"ref_logprobs": torch.zeros(2, 3)}, r"ref_logprobs has shape \(2, 3\)"),
    ],
)
def test_bad_arguments_are_refused_clearly(kwargs, match):
    logprobs, old, advantages, mask = _two_sequences()
    with pytest.raises(ValueError, match=match):
        cwrpo_loss(logprobs, old, advantages, mask, **kwargs)


def test_advantages_must_be_one_per_sequence():
    logprobs, old, _, mask = _two_sequences()
    with pytest.raises(ValueError, match=r"advantages must be \[B\]"):
        cwrpo_loss(logprobs, old, torch.zeros(2, 4), mask)
