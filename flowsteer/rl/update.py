"""The update phase of one RL iteration, in plain torch: which rows each optimizer step sees, the
old-policy log-probs of the whole buffer, and micro-batching under the whole minibatch's normalisers.

One iteration's rollout buffer is split into minibatches (one optimizer step each) for
``ppo_epochs`` passes; each minibatch is split again into micro-batches for gradient
accumulation. `cwrpo_loss` is given the minibatch's normalisers over all ranks (`Normalisers`),
so summing the micro-batch losses (and averaging gradients over ranks, times the world size)
gives exactly the full minibatch's loss, whichever aggregation is chosen; `StepStats` combines
the micro-batches' statistics the same way. The trainer adapters call these; nothing here knows
about Lightning.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass, replace

import torch
from torch import Tensor

from flowsteer.rl.losses import LossAgg, LossOutput, LossStats
from flowsteer.rl.policy import Policy
from flowsteer.rollout.batch import RolloutBatch


@dataclass(frozen=True)
class MinibatchPlan:
    """Row indices of every optimizer step of one iteration.

    Attributes:
        steps: ``steps[k]`` holds the buffer rows of step k; ``ppo_epochs`` passes of
            ``minibatches_per_epoch`` steps each, every pass a fresh seeded permutation.
        minibatches_per_epoch: Steps per pass over the buffer.
    """

    steps: tuple[tuple[int, ...], ...]
    minibatches_per_epoch: int


def num_minibatches(rollout_size: int, minibatch_size: int) -> int:
    """Optimizer steps per pass over a buffer of ``rollout_size`` rows."""
    if rollout_size < 1 or minibatch_size < 1:
        raise ValueError(
            f"rollout_size and minibatch_size must be >= 1, got {rollout_size}, {minibatch_size}"
        )
    return math.ceil(rollout_size / minibatch_size)


def plan_minibatches(
    rows: list[int], rollout_size: int, minibatch_size: int, ppo_epochs: int, seed: int
) -> MinibatchPlan:
    """Shuffle ``rows`` once per pass and cut it into a fixed number of minibatches.

    The number of steps depends only on ``rollout_size`` (the buffer size before any rows were
    dropped), so every rank takes the same number of optimizer steps even when zero-variance
    groups were dropped on some ranks; such a pass simply has smaller (or empty) minibatches.

    Args:
        rows: Buffer rows that train (all rows, or those kept after dropping).
        rollout_size: Rows the iteration produced.
        minibatch_size: Rows per optimizer step.
        ppo_epochs: Passes over the buffer.
        seed: Seeds the permutations (the caller derives it from the run seed and iteration).
    """
    if ppo_epochs < 1:
        raise ValueError(f"ppo_epochs must be >= 1, got {ppo_epochs}")
    per_epoch = num_minibatches(rollout_size, minibatch_size)
    generator = torch.Generator().manual_seed(seed)
    steps: list[tuple[int, ...]] = []
    for _ in range(ppo_epochs):
        order = [rows[i] for i in torch.randperm(len(rows), generator=generator).tolist()]
        size = math.ceil(len(order) / per_epoch) if order else 0
        steps += [tuple(order[k * size : (k + 1) * size]) for k in range(per_epoch)]
    return MinibatchPlan(tuple(steps), per_epoch)


def micro_batches(batch: RolloutBatch, micro_batch_size: int) -> Iterator[RolloutBatch]:
    """Consecutive slices of at most ``micro_batch_size`` rows, each trimmed to its longest row."""
    if micro_batch_size < 1:
        raise ValueError(f"micro_batch_size must be >= 1, got {micro_batch_size}")
    for start in range(0, len(batch), micro_batch_size):
        yield trim(batch.select(list(range(start, min(start + micro_batch_size, len(batch))))))


def trim(batch: RolloutBatch) -> RolloutBatch:
    """Drop the padding columns every row shares (right padding), so short micro-batches are cheap."""
    if len(batch) == 0:
        return batch
    length = int(batch.attention_mask.sum(dim=1).max())
    if length == batch.input_ids.shape[1]:
        return batch
    cut = {
        name: value[:, :length]
        for name in (
            "input_ids",
            "attention_mask",
            "loss_mask",
            "rollout_logprobs",
            "old_logprobs",
            "ref_logprobs",
        )
        if (value := getattr(batch, name)) is not None
    }
    return replace(batch, **cut)


@dataclass(frozen=True)
class Normalisers:
    """The whole minibatch's counts over all ranks, which every micro-batch's loss divides by.

    Attributes:
        tokens: Mask-1 tokens.
        sequences: Rows with at least one mask-1 token.
        width: Padded length of the widest row (after `trim`).
    """

    tokens: int
    sequences: int
    width: int

    def loss_kwargs(self, loss_agg: LossAgg) -> dict[str, int]:
        """The `cwrpo_loss` keywords that make ``loss_agg`` of a part sum to the whole's.

        ``seq-mean-token-sum-norm`` divides by the whole minibatch's padded length, the value
        `cwrpo_loss` uses on an unsplit batch, so the split does not change the loss.
        """
        if loss_agg == "token-mean":
            return {"num_tokens": max(self.tokens, 1)}
        kwargs = {"num_sequences": max(self.sequences, 1)}
        if loss_agg == "seq-mean-token-sum-norm":
            kwargs["norm_length"] = max(self.width, 1)
        return kwargs


def local_counts(batch: RolloutBatch) -> tuple[Tensor, Tensor]:
    """This rank's share of `Normalisers`: ``(tokens, sequences)`` to sum, ``width`` to max."""
    tokens_per_row = batch.loss_mask.sum(dim=1)  # [B]
    sums = torch.stack([tokens_per_row.sum(), (tokens_per_row > 0).sum()]).double()
    width = torch.tensor([float(batch.input_ids.shape[1]) if len(batch) else 0.0]).double()
    return sums, width.to(sums.device)


class StepStats:
    """The loss and `LossStats` of one optimizer step's micro-batches, combined field by field.

    Sums stay sums, maxima stay maxima, and means are carried as token-weighted sums until
    `result`, so a trainer combines its ranks with one SUM and one MAX all-reduce of `packed`.
    Every rank must `add` the same fields in the same order (the same config does).
    """

    def __init__(self) -> None:
        self._sums: dict[str, Tensor] = {}  # "loss", sum fields, mean fields × tokens
        self._maxes: dict[str, Tensor] = {}
        self._reductions = LossStats.reductions()

    def add(self, output: LossOutput, *, count: bool = True) -> None:
        """Fold in one micro-batch; ``count=False`` adds its fields with no weight (a stand-in)."""
        stats, weight = output.stats, 1.0 if count else 0.0
        tokens = stats.num_tokens.detach().double()
        self._add_sum("loss", output.loss.detach().double() * weight)
        for name, reduce in self._reductions.items():
            value = getattr(stats, name)
            if value is None:
                continue
            value = value.detach().double()
            if reduce == "sum":
                self._add_sum(name, value * weight)
            elif reduce == "mean":
                self._add_sum(name, value * tokens * weight)
            else:  # max, over parts that have tokens
                seen = torch.where(tokens > 0, value, -math.inf) if count else value - math.inf
                previous = self._maxes.get(name)
                self._maxes[name] = seen if previous is None else torch.maximum(previous, seen)

    def packed(self) -> tuple[Tensor, Tensor]:
        """``(sums, maxima)`` as two float64 vectors, to all-reduce with SUM and MAX."""
        sums = torch.stack(list(self._sums.values())) if self._sums else torch.zeros(0)
        maxes = torch.stack(list(self._maxes.values())) if self._maxes else torch.zeros(0)
        return sums, maxes.to(sums.device)

    def result(self, sums: Tensor | None = None, maxes: Tensor | None = None) -> dict[str, float]:
        """The step's ``loss`` and statistics, from `packed` (or its all-reduced version).

        Means are divided by the summed ``num_tokens``; a maximum over no tokens is 0.
        """
        local_sums, local_maxes = self.packed()
        sums = local_sums if sums is None else sums
        maxes = local_maxes if maxes is None else maxes
        summed = dict(zip(self._sums, sums.tolist(), strict=True))
        out: dict[str, float] = {"loss": summed["loss"]} if "loss" in summed else {}
        tokens = summed.get("num_tokens", 0.0)
        for name, reduce in self._reductions.items():
            if reduce == "sum" and name in summed:
                out[name] = summed[name]
            elif reduce == "mean" and name in summed:
                out[name] = summed[name] / max(tokens, 1.0)
        for name, value in zip(self._maxes, maxes.tolist(), strict=True):
            out[name] = value if math.isfinite(value) else 0.0
        return out

    def _add_sum(self, name: str, value: Tensor) -> None:
        self._sums[name] = value if name not in self._sums else self._sums[name] + value


@torch.no_grad()
def score_buffer(
    policy: Policy,
    batch: RolloutBatch,
    micro_batch_size: int,
    *,
    reference: bool,
    temperature: float = 1.0,
    old: bool = True,
) -> RolloutBatch:
    """The buffer with ``old_logprobs`` (and ``ref_logprobs`` when ``reference``) filled in.

    Computed once per iteration, before the first update, under ``no_grad`` and in micro-batches
    (the caller picks train/eval mode). Only loss-mask positions are scored (the LM head runs
    nowhere else); every other column is 0.

    Args:
        policy: The policy as it is before this iteration's first update.
        batch: The iteration's buffer, ``[B, T]``.
        micro_batch_size: Rows per forward pass.
        reference: Also score under the reference policy (needed when the KL coefficient > 0).
        temperature: The sampling temperature (`SamplingParams.logprob_temperature`): both
            scores are of ``logits / temperature``, the distribution the engine sampled from.
        old: Score the old policy. ``False`` when the update is exactly on-policy and takes the
            detached current log-probs as old (`old_is_current`); ``old_logprobs`` is then
            left as it was.
    """
    if not (old or reference):
        return batch
    scored_old = torch.zeros_like(batch.rollout_logprobs) if old else None
    ref = torch.zeros_like(batch.rollout_logprobs) if reference else None
    for start in range(0, len(batch), micro_batch_size):
        rows = slice(start, min(start + micro_batch_size, len(batch)))
        ids, mask = batch.input_ids[rows], batch.attention_mask[rows]
        length = int(mask.sum(dim=1).max()) if mask.numel() else 0
        ids, mask = ids[:, :length], mask[:, :length]
        wanted = batch.loss_mask[rows, :length]
        if scored_old is not None:
            lp = policy.token_logprobs(ids, mask, temperature=temperature, score_mask=wanted)
            scored_old[rows, :length] = lp.logprobs.to(scored_old.dtype)
        if ref is not None:
            lp = policy.reference_logprobs(ids, mask, temperature=temperature, score_mask=wanted)
            ref[rows, :length] = lp.to(ref.dtype)
    return replace(
        batch,
        old_logprobs=scored_old if old else batch.old_logprobs,
        ref_logprobs=ref,
    )


def old_is_current(*, ppo_epochs: int, minibatches: int, dropout_free: bool) -> bool:
    """Whether the old log-probs equal the policy's own at its single update step.

    π_old is the trainer's policy at the start of the iteration. One pass over one minibatch
    means the only optimizer step runs on exactly that policy, so ``ρ = 1`` by construction
    and a scoring pass would recompute the log-probs the step computes anyway (with dropout
    the two forwards would differ). The step then uses its own detached log-probs as old.
    Which weights the engine sampled with does not enter: that gap is the behaviour-policy
    correction's (``rollout_logprobs``, truncated importance sampling), not the ratio's.
    """
    return ppo_epochs == 1 and minibatches == 1 and dropout_free


__all__ = [
    "MinibatchPlan",
    "Normalisers",
    "StepStats",
    "local_counts",
    "micro_batches",
    "num_minibatches",
    "old_is_current",
    "plan_minibatches",
    "score_buffer",
    "trim",
]
