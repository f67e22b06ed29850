"""The supervised warm-start loss (`flowsteer sft`) as a pure function over per-token tensors.

Imitation of expert episodes is the negative log-likelihood of the policy's own tokens: the
positions where the loss mask is 1 (each turn the policy writes, with its end-of-turn token).
Prompts, observations and template tokens have mask 0 and get exactly zero gradient, as in the
CWRPO loss. Shapes and the index convention are those of `flowsteer.rl.losses`: ``[B, T]``,
position ``t`` scores token ``t`` given the tokens before it.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Literal, NamedTuple

from torch import Tensor

SFTLossAgg = Literal["token-mean", "seq-mean-token-mean"]
_AGGS = ("token-mean", "seq-mean-token-mean")


@dataclass(frozen=True)
class SFTStats:
    """Detached statistics of one `sft_loss` call.

    Attributes:
        nll: Mean negative log-likelihood per mask-1 token (whatever the aggregation).
        num_tokens: Mask-1 tokens in the call.
        num_sequences: Sequences with at least one mask-1 token.
    """

    nll: Tensor
    num_tokens: Tensor
    num_sequences: Tensor

    def to_dict(self, prefix: str = "sft") -> dict[str, float]:
        """The statistics as floats named ``"{prefix}/{field}"`` for logging."""
        return {f"{prefix}/{f.name}": float(getattr(self, f.name)) for f in fields(self)}


class SFTLossOutput(NamedTuple):
    """What `sft_loss` returns.

    Attributes:
        loss: The scalar to minimise (differentiable in ``logprobs``).
        stats: Detached statistics for logging.
    """

    loss: Tensor
    stats: SFTStats


def sft_loss(
    logprobs: Tensor,
    mask: Tensor,
    *,
    loss_agg: SFTLossAgg = "token-mean",
    num_tokens: float | None = None,
) -> SFTLossOutput:
    """Negative log-likelihood of the mask-1 tokens.

    Args:
        logprobs: ``[B, T]`` log π_θ of each token given its prefix (`Policy.token_logprobs`).
        mask: ``[B, T]`` 1 on the tokens to imitate (the policy's turns), 0 elsewhere.
        loss_agg: ``token-mean`` (every imitated token weighs the same) or
            ``seq-mean-token-mean`` (every episode weighs the same, 1/N Σ_i 1/|τ_i|).
        num_tokens: ``token-mean`` normaliser; ``None``: this call's mask-1 count. Pass the
            count of the whole batch when the batch is split into micro-batches, so that their
            losses sum to the full-batch loss.

    Returns:
        `SFTLossOutput`; with no mask-1 token the loss is 0 (still differentiable).
    """
    if logprobs.shape != mask.shape or logprobs.dim() != 2:
        raise ValueError(
            f"logprobs and mask must both be [B, T]; got {tuple(logprobs.shape)} and "
            f"{tuple(mask.shape)}"
        )
    if loss_agg not in _AGGS:
        raise ValueError(f"loss_agg must be one of {_AGGS}, got {loss_agg!r}")
    mask = mask.to(logprobs.dtype)
    nll = -logprobs * mask  # [B, T], exactly 0 where mask is 0
    per_seq_tokens = mask.sum(dim=1)  # [B]
    count = per_seq_tokens.sum()  # []
    if loss_agg == "token-mean":
        denom = count.clamp(min=1.0) if num_tokens is None else max(float(num_tokens), 1.0)
        loss = nll.sum() / denom
    else:
        per_seq = nll.sum(dim=1) / per_seq_tokens.clamp(min=1.0)  # [B]
        loss = per_seq.sum() / max(logprobs.shape[0], 1)
    stats = SFTStats(
        nll=(nll.sum() / count.clamp(min=1.0)).detach(),
        num_tokens=count.detach(),
        num_sequences=(per_seq_tokens > 0).sum().detach(),
    )
    return SFTLossOutput(loss, stats)


__all__ = ["SFTLossAgg", "SFTLossOutput", "SFTStats", "sft_loss"]
