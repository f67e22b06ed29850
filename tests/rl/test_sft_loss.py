"""`sft_loss`: the NLL of mask-1 tokens only, aggregated as asked, with honest statistics."""

from __future__ import annotations

import math

import pytest
import torch

from flowsteer.rl.sft import sft_loss


def _inputs():
    logprobs = torch.log(torch.tensor([[0.5, 0.25, 0.5, 0.9], [0.1, 0.5, 0.5, 0.5]]))
    mask = torch.tensor([[0.0, 1.0, 1.0, 0.0], [0.0, 1.0, 0.0, 0.0]])
    return logprobs.requires_grad_(True), mask


def test_token_mean_is_the_nll_of_masked_tokens_only():
    logprobs, mask = _inputs()
    out = sft_loss(logprobs, mask)
    expected = -(math.log(0.25) + math.log(0.5) + math.log(0.5)) / 3
    assert out.loss.item() == pytest.approx(expected)
    out.loss.backward()
    assert torch.all(logprobs.grad[mask == 0] == 0)  # exactly no gradient off the mask
    assert torch.allclose(logprobs.grad[mask == 1], torch.full((3,), -1 / 3))
    stats = out.stats.to_dict()
    assert stats["sft/num_tokens"] == 3 and stats["sft/num_sequences"] == 2
    assert stats["sft/nll"] == pytest.approx(expected)


def test_seq_mean_weighs_each_episode_equally():
    logprobs, mask = _inputs()
    out = sft_loss(logprobs, mask, loss_agg="seq-mean-token-mean")
    first = -(math.log(0.25) + math.log(0.5)) / 2
    second = -math.log(0.5)
    assert out.loss.item() == pytest.approx((first + second) / 2)


def test_micro_batches_sum_to_the_full_batch_loss():
    logprobs, mask = _inputs()
    whole = sft_loss(logprobs, mask).loss
    parts = sum(sft_loss(logprobs[i : i + 1], mask[i : i + 1], num_tokens=3).loss for i in range(2))
    assert parts.item() == pytest.approx(whole.item())


def test_no_masked_token_gives_zero_loss():
    logprobs, mask = _inputs()
    out = sft_loss(logprobs, torch.zeros_like(mask))
    assert out.loss.item() == 0.0 and out.stats.num_tokens.item() == 0


def test_bad_shapes_and_aggregation_are_refused():
    logprobs, mask = _inputs()
    with pytest.raises(ValueError, match=r"\[B, T\]"):
        sft_loss(logprobs, mask[:, :2])
    with pytest.raises(ValueError, match="loss_agg"):
        sft_loss(logprobs, mask, loss_agg="sum")  # type: ignore[arg-type]
