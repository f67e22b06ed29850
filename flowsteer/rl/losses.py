"""The masked CWRPO objective (docs/design.md §5) as a pure function over per-token tensors.

Everything here is a function of tensors: no model, no trainer. The caller computes the current
log-probs with `Policy.token_logprobs` and passes the rollout's old (and optionally reference and
engine) log-probs; `cwrpo_loss` returns the scalar to minimise plus detached statistics.

Shapes: ``B`` sequences, ``T`` tokens per (right-padded) sequence. Every per-token tensor is
``[B, T]`` and follows the index convention of `flowsteer.rollout.trajectory`: position ``t``
scores token ``t`` given tokens ``< t``; only positions where ``mask`` is 1 enter the loss.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Literal, NamedTuple

import torch
from torch import Tensor

LossAgg = Literal["token-mean", "seq-mean-token-mean", "seq-mean-token-sum-norm"]
KLEstimator = Literal["k1", "k2", "k3"]

_LOSS_AGGS = ("token-mean", "seq-mean-token-mean", "seq-mean-token-sum-norm")
_KL_ESTIMATORS = ("k1", "k2", "k3")


StatReduce = Literal["sum", "mean", "max"]


@dataclass(frozen=True)
class LossStats:
    """Detached scalar statistics of one `cwrpo_loss` call.

    Each field declares how the statistics of the parts of a batch (micro-batches, ranks)
    combine into the whole batch's (`reductions`), so that a trainer never averages a maximum:

    * ``sum``: ``pg_loss`` (its parts were divided by the whole batch's normalisers, so they
      add up to the whole batch's value) and ``num_tokens``;
    * ``max``: ``ratio_max``;
    * ``mean``: every other field, a mean over mask-1 tokens, combined weighted by
      ``num_tokens``.

    Attributes:
        pg_loss: The clipped policy-gradient term alone, aggregated like the loss.
        clip_frac_low: Share of tokens whose gradient the lower clip removes
            (``ratio < 1 - clip_eps_low`` with a negative advantage).
        clip_frac_high: Share of tokens whose gradient the upper clip removes
            (``ratio > 1 + clip_eps_high`` with a positive advantage).
        approx_kl_old: KL(π_old ‖ π_θ), k3 estimate on the sampled tokens: ``(ρ - 1) - log ρ``.
        ratio_mean: Mean of ρ = π_θ / π_old.
        ratio_max: Largest ρ (0 when there are no mask tokens).
        num_tokens: Number of mask-1 tokens in this call.
        kl_ref: Mean per-token KL penalty to the reference (the chosen estimator); ``None``
            without ``ref_logprobs``.
        mismatch_abs: Mean |old − rollout| log-prob (trainer vs engine); ``None`` without
            ``rollout_logprobs``.
        mismatch_kl: KL(π_rollout ‖ π_old), k3 estimate on the sampled tokens; ``None`` without
            ``rollout_logprobs``.
        tis_weight_mean: Mean truncated importance weight; ``None`` without TIS.
        entropy: Mean per-token entropy of π_θ; ``None`` without ``entropy``.
    """

    pg_loss: Tensor = field(metadata={"reduce": "sum"})
    clip_frac_low: Tensor = field(metadata={"reduce": "mean"})
    clip_frac_high: Tensor = field(metadata={"reduce": "mean"})
    approx_kl_old: Tensor = field(metadata={"reduce": "mean"})
    ratio_mean: Tensor = field(metadata={"reduce": "mean"})
    ratio_max: Tensor = field(metadata={"reduce": "max"})
    num_tokens: Tensor = field(metadata={"reduce": "sum"})
    kl_ref: Tensor | None = field(default=None, metadata={"reduce": "mean"})
    mismatch_abs: Tensor | None = field(default=None, metadata={"reduce": "mean"})
    mismatch_kl: Tensor | None = field(default=None, metadata={"reduce": "mean"})
    tis_weight_mean: Tensor | None = field(default=None, metadata={"reduce": "mean"})
    entropy: Tensor | None = field(default=None, metadata={"reduce": "mean"})

    @classmethod
    def reductions(cls) -> dict[str, StatReduce]:
        """Each field's name and how its values over the parts of a batch combine."""
        return {f.name: f.metadata["reduce"] for f in fields(cls)}

    def to_dict(self, prefix: str = "loss") -> dict[str, float]:
        """The statistics that are present, as floats named ``"{prefix}/{field}"`` for logging."""
        return {
            f"{prefix}/{f.name}": float(value)
            for f in fields(self)
            if (value := getattr(self, f.name)) is not None
        }


class LossOutput(NamedTuple):
    """What `cwrpo_loss` returns.

    Attributes:
        loss: The scalar to minimise (differentiable in ``logprobs``).
        stats: Detached statistics for logging.
    """

    loss: Tensor
    stats: LossStats


def kl_penalty(logprobs: Tensor, ref_logprobs: Tensor, estimator: KLEstimator) -> Tensor:
    """Per-token estimate of KL(π_θ ‖ π_ref) from the log-probs of the sampled tokens.

    With ``δ = log π_ref − log π_θ`` (Schulman, "Approximating KL divergence", 2020):

    * ``k1 = −δ = log π_θ − log π_ref`` (unbiased, can be negative);
    * ``k2 = ½ δ²`` (biased, non-negative, low variance);
    * ``k3 = exp(δ) − δ − 1`` (unbiased under π_θ sampling, non-negative).

    Args:
        logprobs: log π_θ of the sampled tokens, ``[B, T]``.
        ref_logprobs: log π_ref of the same tokens, ``[B, T]`` (no gradient flows into it).
        estimator: ``"k1"``, ``"k2"`` or ``"k3"``.

    Returns:
        ``[B, T]`` per-token estimates, differentiable in ``logprobs``.
    """
    delta = ref_logprobs.detach() - logprobs  # [B, T]
    if estimator == "k1":
        return -delta
    if estimator == "k2":
        return 0.5 * delta.square()
    if estimator == "k3":
        return torch.expm1(delta) - delta
    raise ValueError(f"kl_estimator must be one of {_KL_ESTIMATORS}, got {estimator!r}")


def cwrpo_loss(
    logprobs: Tensor,
    old_logprobs: Tensor,
    advantages: Tensor,
    mask: Tensor,
    *,
    ref_logprobs: Tensor | None = None,
    rollout_logprobs: Tensor | None = None,
    clip_eps_low: float = 0.2,
    clip_eps_high: float = 0.2,
    kl_coef: float = 0.0,
    kl_estimator: KLEstimator = "k3",
    loss_agg: LossAgg = "token-mean",
    tis_cap: float | None = None,
    num_tokens: int | Tensor | None = None,
    num_sequences: int | Tensor | None = None,
    norm_length: int | None = None,
    entropy: Tensor | None = None,
) -> LossOutput:
    """The clipped, masked CWRPO surrogate plus an optional KL penalty to a reference policy.

    Per mask-1 token, with ``ρ = exp(logprobs − old_logprobs)`` and the sequence's advantage A::

        ℓ_t = −w_t · min(ρ A, clip(ρ, 1 − ε_low, 1 + ε_high) A) + β · KL_t

    where ``w_t = min(exp(old − rollout), tis_cap)`` (detached) under TIS and 1 otherwise, and
    ``KL_t`` is `kl_penalty` of the chosen estimator. The ℓ_t are then aggregated by ``loss_agg``:

    * ``"token-mean"``: ``Σ_{b,t} mask·ℓ / N`` with ``N = num_tokens`` (default: the mask-1
      count here). Pass the global mask-1 count of the whole batch when it is split into
      micro-batches or ranks, so the micro-batch losses sum to the full-batch loss.
    * ``"seq-mean-token-mean"``: each sequence's mean over its mask-1 tokens, then the mean over
      sequences (the paper's ``1/N Σ_i 1/|τ_i|``).
    * ``"seq-mean-token-sum-norm"`` (Dr. GRPO): each sequence's sum over its mask-1 tokens
      divided by the constant ``norm_length`` (default: ``T``, the padded length here), then the
      mean over sequences.

    In both seq-mean modes a sequence without mask-1 tokens is left out (it neither contributes
    nor dilutes), and the mean over sequences divides by ``num_sequences`` (default: the number
    of sequences here that have a mask-1 token); pass the global such count when splitting a
    batch. ``num_tokens`` applies to ``token-mean`` only and is refused otherwise. Split the
    ``seq-mean-token-sum-norm`` batch with a fixed ``norm_length`` too, or the padded length of
    each micro-batch changes the normaliser.

    Masked positions contribute exactly zero to the loss and its gradient, whatever values they
    hold; an all-zero mask gives a loss of 0 (not NaN).

    Args:
        logprobs: log π_θ of the sampled tokens, ``[B, T]`` (carries the gradient).
        old_logprobs: log π_old (the policy that sampled, recomputed by the trainer), ``[B, T]``.
        advantages: One advantage per sequence, ``[B]``.
        mask: 1 on tokens the policy sampled, 0 elsewhere, ``[B, T]`` (bool or 0/1 numbers).
        ref_logprobs: log π_ref, ``[B, T]``; required when ``kl_coef > 0``.
        rollout_logprobs: The engine's sampling log-probs, ``[B, T]``; enables the mismatch
            statistics, and TIS when ``tis_cap`` is set.
        clip_eps_low: ε_low, the lower clip range of ρ.
        clip_eps_high: ε_high, the upper clip range of ρ.
        kl_coef: β, the weight of the KL penalty (0: none).
        kl_estimator: ``"k1"``, ``"k2"`` or ``"k3"`` (see `kl_penalty`).
        loss_agg: How per-token losses become one scalar (above).
        tis_cap: Cap of the truncated importance weight; ``None``: no TIS.
        num_tokens: Global mask-1 count for ``token-mean``.
        num_sequences: Global count of sequences with a mask-1 token, for the seq-mean modes.
        norm_length: The constant divisor of ``seq-mean-token-sum-norm``.
        entropy: Per-token entropy of π_θ, ``[B, T]``, for the statistics only.

    Returns:
        `LossOutput` (scalar loss, detached `LossStats`).
    """
    _check_inputs(logprobs, old_logprobs, advantages, mask, ref_logprobs, rollout_logprobs)
    if loss_agg not in _LOSS_AGGS:
        raise ValueError(f"loss_agg must be one of {_LOSS_AGGS}, got {loss_agg!r}")
    if kl_estimator not in _KL_ESTIMATORS:
        raise ValueError(f"kl_estimator must be one of {_KL_ESTIMATORS}, got {kl_estimator!r}")
    if kl_coef > 0 and ref_logprobs is None:
        raise ValueError(
            f"kl_coef={kl_coef} needs ref_logprobs (build the policy with a reference)"
        )
    if tis_cap is not None and rollout_logprobs is None:
        raise ValueError("tis_cap is set but rollout_logprobs were not given")
    if tis_cap is not None and tis_cap <= 0:
        raise ValueError(f"tis_cap must be positive, got {tis_cap}")
    if num_tokens is not None and loss_agg != "token-mean":
        raise ValueError(
            f"num_tokens normalises loss_agg='token-mean' only; with {loss_agg!r} pass "
            "num_sequences (the global count of sequences with a mask-1 token)"
        )
    if num_sequences is not None and loss_agg == "token-mean":
        raise ValueError("num_sequences applies to the seq-mean modes; use num_tokens")

    valid = mask.bool()  # [B, T]
    zero = logprobs.new_zeros(())
    # Masking the log-ratio (not the loss) keeps garbage at padded positions from ever reaching
    # exp(): a masked position has ρ = 1 and gets exactly zero gradient.
    log_ratio = torch.where(valid, logprobs - old_logprobs.detach(), zero)  # [B, T]
    ratio = torch.exp(log_ratio)  # [B, T]
    adv = advantages.detach().to(logprobs.dtype).unsqueeze(-1)  # [B, 1]
    clipped = ratio.clamp(1.0 - clip_eps_low, 1.0 + clip_eps_high)  # [B, T]
    pg = -torch.minimum(ratio * adv, clipped * adv)  # [B, T]

    tis_weight = None
    if tis_cap is not None:
        gap = torch.where(valid, old_logprobs - rollout_logprobs, zero).detach()  # [B, T]
        tis_weight = torch.exp(gap).clamp(max=tis_cap)  # [B, T]
        pg = pg * tis_weight

    per_token = pg  # [B, T]
    kl = None
    if ref_logprobs is not None:
        kl = kl_penalty(
            torch.where(valid, logprobs, ref_logprobs.detach()), ref_logprobs, kl_estimator
        )
        if kl_coef > 0:
            per_token = per_token + kl_coef * kl

    agg = _aggregator(valid, loss_agg, num_tokens, num_sequences, norm_length)
    loss = agg(per_token)

    with torch.no_grad():
        n = valid.sum()
        stats = LossStats(
            pg_loss=agg(pg).detach(),
            clip_frac_low=_masked_mean((ratio < 1.0 - clip_eps_low) & (adv < 0), valid),
            clip_frac_high=_masked_mean((ratio > 1.0 + clip_eps_high) & (adv > 0), valid),
            approx_kl_old=_masked_mean(torch.expm1(log_ratio) - log_ratio, valid),
            ratio_mean=_masked_mean(ratio, valid),
            ratio_max=torch.where(valid, ratio, zero).amax() if valid.numel() else zero,
            num_tokens=n.detach(),
            kl_ref=None if kl is None else _masked_mean(kl, valid),
            mismatch_abs=None
            if rollout_logprobs is None
            else _masked_mean((old_logprobs - rollout_logprobs).abs(), valid),
            mismatch_kl=None
            if rollout_logprobs is None
            else _masked_mean(_k3(old_logprobs - rollout_logprobs, valid), valid),
            tis_weight_mean=None if tis_weight is None else _masked_mean(tis_weight, valid),
            entropy=None if entropy is None else _masked_mean(entropy, valid),
        )
    return LossOutput(loss, stats)


def _aggregator(
    valid: Tensor,
    loss_agg: LossAgg,
    num_tokens: int | Tensor | None,
    num_sequences: int | Tensor | None,
    norm_length: int | None,
):
    """A function ``[B, T] -> scalar`` implementing ``loss_agg`` over the mask ``valid``."""
    if loss_agg == "token-mean":
        denominator = valid.sum() if num_tokens is None else torch.as_tensor(num_tokens)

        def token_mean(x: Tensor) -> Tensor:
            total = torch.where(valid, x, 0.0).sum()
            return total / denominator.to(x.dtype).clamp(min=1)

        return token_mean

    tokens_per_seq = valid.sum(-1)  # [B]
    has_tokens = tokens_per_seq > 0  # [B]
    sequences = has_tokens.sum() if num_sequences is None else torch.as_tensor(num_sequences)
    if loss_agg == "seq-mean-token-mean":
        per_seq_divisor = tokens_per_seq.clamp(min=1)  # [B]
    else:
        length = valid.shape[-1] if norm_length is None else norm_length
        if length <= 0:
            raise ValueError(f"norm_length must be positive, got {length}")
        per_seq_divisor = torch.full_like(tokens_per_seq, length)  # [B]

    def seq_mean(x: Tensor) -> Tensor:
        per_seq = torch.where(valid, x, 0.0).sum(-1) / per_seq_divisor.to(x.dtype)  # [B]
        return per_seq.sum() / sequences.to(x.dtype).clamp(min=1)

    return seq_mean


def _masked_mean(x: Tensor, valid: Tensor) -> Tensor:
    """Mean of ``x`` over ``valid`` positions (0 when there are none), detached, as float32."""
    x = torch.where(valid, x.detach().float(), 0.0)
    return x.sum() / valid.sum().clamp(min=1)


def _k3(log_ratio: Tensor, valid: Tensor) -> Tensor:
    """``exp(r) − r − 1`` of a log-ratio, with masked positions set to 0 before exp."""
    log_ratio = torch.where(valid, log_ratio.detach(), 0.0)
    return torch.expm1(log_ratio) - log_ratio


def _check_inputs(
    logprobs: Tensor,
    old_logprobs: Tensor,
    advantages: Tensor,
    mask: Tensor,
    ref_logprobs: Tensor | None,
    rollout_logprobs: Tensor | None,
) -> None:
    if logprobs.dim() != 2:
        raise ValueError(f"logprobs must be [B, T], got shape {tuple(logprobs.shape)}")
    named = {
        "old_logprobs": old_logprobs,
        "mask": mask,
        "ref_logprobs": ref_logprobs,
        "rollout_logprobs": rollout_logprobs,
    }
    for name, tensor in named.items():
        if tensor is not None and tensor.shape != logprobs.shape:
            raise ValueError(
                f"{name} has shape {tuple(tensor.shape)}, expected logprobs' {tuple(logprobs.shape)}"
            )
    if advantages.shape != logprobs.shape[:1]:
        raise ValueError(
            f"advantages must be [B] = ({logprobs.shape[0]},), got {tuple(advantages.shape)}"
        )
