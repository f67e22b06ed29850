"""`chunked_logprobs`: chunking changes neither values nor gradients, and one chunk is not recomputed."""

from __future__ import annotations

import pytest
import torch

from flowsteer.rl.token_logprobs import chunked_logprobs, default_chunk_size

N, H, V = 10, 8, 37


class CountingHead(torch.nn.Module):
    """A trainable LM head that counts the tokens it projects (forward and recompute alike)."""

    def __init__(self) -> None:
        super().__init__()
        self.linear = torch.nn.Linear(H, V, bias=False)
        torch.nn.init.normal_(self.linear.weight, generator=torch.Generator().manual_seed(0))
        self.tokens = 0

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        self.tokens += h.shape[0]
        return self.linear(h).float()


def _run(chunk_size: int, *, head_trainable: bool, with_entropy: bool = True):
    """Values, d/d hidden and d/d head weight of a weighted sum of log-probs and entropies."""
    gen = torch.Generator().manual_seed(1)
    hidden = torch.randn(N, H, generator=gen).requires_grad_()
    targets = torch.randint(0, V, (N,), generator=gen)
    weights = torch.randn(2, N, generator=gen)
    head = CountingHead().requires_grad_(head_trainable)
    lp, ent = chunked_logprobs(
        hidden,
        targets,
        head,
        chunk_size=chunk_size,
        with_entropy=with_entropy,
        head_trainable=head_trainable,
    )
    loss = (lp * weights[0]).sum() + ((ent * weights[1]).sum() if with_entropy else 0.0)
    loss.backward()
    grad_w = head.linear.weight.grad if head_trainable else None
    return lp.detach(), ent, hidden.grad, grad_w, head.tokens


@pytest.mark.parametrize("head_trainable", [True, False], ids=["trainable", "frozen"])
def test_chunking_changes_neither_values_nor_gradients(head_trainable):
    one = _run(N, head_trainable=head_trainable)
    for chunk in (1, 3, N + 5):
        other = _run(chunk, head_trainable=head_trainable)
        for got, want in zip(other[:4], one[:4], strict=True):
            if want is not None:
                torch.testing.assert_close(got.detach(), want.detach(), atol=1e-5, rtol=1e-5)


def test_a_trainable_head_recomputes_chunks_only_when_there_are_several():
    # One chunk: the head runs once per token; checkpointing would only run it again.
    assert _run(N, head_trainable=True)[4] == N
    assert _run(N + 5, head_trainable=True)[4] == N
    # Several chunks: each is checkpointed, so the backward pass projects every token again.
    assert _run(3, head_trainable=True)[4] == 2 * N


def test_the_default_chunk_bounds_logits_elements():
    assert default_chunk_size(151_936) == 1024
    assert default_chunk_size(870) == 1024 * 151_936 // 870
    assert default_chunk_size(10**12) == 1
