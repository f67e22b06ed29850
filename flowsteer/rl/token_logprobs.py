"""Per-token log-probs from hidden states, with the vocabulary-sized logits bounded by a chunk.

At a 150k vocabulary, ``[tokens, vocab]`` float32 logits dwarf everything else a policy update
holds (2,048 tokens are 1.2 GB, and autograd keeps the log-softmax too). `chunked_logprobs`
applies the LM head and the log-softmax to at most ``chunk_size`` tokens at a time, so the
logits memory is ``chunk_size × vocab`` whatever the batch, and gradients stay exact:

* no gradient needed (old and reference log-probs): a plain loop over chunks;
* a frozen head (LoRA, the usual case): each chunk's gradient with respect to its hidden
  states is computed in the forward pass, while the logits are at hand, and only that
  ``[tokens, hidden]`` gradient is kept, so the backward pass is one multiply;
* a trainable head (full fine-tuning): each chunk is activation-checkpointed, so the backward
  pass recomputes one chunk's logits at a time; when every position fits in one chunk there is
  nothing to bound, and autograd keeps that one chunk's logits rather than recompute them.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor
from torch.utils.checkpoint import checkpoint

DEFAULT_CHUNK_LOGITS = 1024 * 151_936
"""Logits elements per chunk when no chunk size is given: 1,024 tokens at Qwen3's 151,936-token
vocabulary (622 MB in float32); at a small vocabulary, every position of a batch at once."""

HeadFn = Callable[[Tensor], Tensor]
"""Hidden states ``[n, H]`` to float32 logits ``[n, V]`` (LM head plus any logit transform)."""


def chunked_logprobs(
    hidden: Tensor,
    targets: Tensor,
    head: HeadFn,
    *,
    chunk_size: int,
    with_entropy: bool = False,
    head_trainable: bool = False,
) -> tuple[Tensor, Tensor | None]:
    """Log-prob of each target token (and the entropy of each distribution), chunk by chunk.

    Args:
        hidden: The final hidden state that predicts each target, ``[N, H]``.
        targets: The token scored at each position, ``[N]`` long.
        head: `HeadFn` mapping ``[n, H]`` hidden states to ``[n, V]`` float32 logits.
        chunk_size: Most tokens whose logits exist at once.
        with_entropy: Also return the entropy of each predicted distribution.
        head_trainable: Whether the head has parameters that need gradients; then chunks are
            checkpointed (when there is more than one) instead of differentiated in the
            forward pass.

    Returns:
        ``(logprobs [N], entropy [N] or None)``, float32, differentiable in ``hidden`` (and in
        the head's parameters when ``head_trainable``).
    """
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be at least 1, got {chunk_size}")
    needs_grad = torch.is_grad_enabled() and (hidden.requires_grad or head_trainable)
    if not needs_grad:
        with torch.no_grad():
            parts = [
                _chunk(head, hidden[i : i + chunk_size], targets[i : i + chunk_size], with_entropy)
                for i in range(0, hidden.shape[0], chunk_size)
            ]
        return _cat(parts, hidden, with_entropy)
    if head_trainable:
        if 0 < hidden.shape[0] <= chunk_size:
            # One chunk: checkpointing would hold no less memory, only run the head twice.
            return _chunk(head, hidden, targets, with_entropy)
        parts = [
            checkpoint(
                _chunk,
                head,
                hidden[i : i + chunk_size],
                targets[i : i + chunk_size],
                with_entropy,
                use_reentrant=False,
            )
            for i in range(0, hidden.shape[0], chunk_size)
        ]
        return _cat(parts, hidden, with_entropy)
    logprobs, entropy = _FrozenHeadLogprobs.apply(hidden, targets, head, chunk_size, with_entropy)
    return logprobs, entropy if with_entropy else None


def default_chunk_size(vocab_size: int) -> int:
    """Tokens per chunk that keep the logits at `DEFAULT_CHUNK_LOGITS` elements."""
    return max(1, DEFAULT_CHUNK_LOGITS // max(vocab_size, 1))


def _chunk(head: HeadFn, hidden: Tensor, targets: Tensor, with_entropy: bool):
    """``(logprobs [n], entropy [n] or None)`` of one chunk; the only place logits exist."""
    logp = head(hidden).log_softmax(-1)  # [n, V] float32
    logprobs = logp.gather(-1, targets.unsqueeze(-1)).squeeze(-1)  # [n]
    entropy = -(logp.exp() * logp).sum(-1) if with_entropy else None  # [n]
    return logprobs, entropy


def _cat(parts, hidden: Tensor, with_entropy: bool) -> tuple[Tensor, Tensor | None]:
    if not parts:
        empty = hidden.new_zeros(0, dtype=torch.float32)
        return empty, empty if with_entropy else None
    logprobs = torch.cat([p[0] for p in parts])
    entropy = torch.cat([p[1] for p in parts]) if with_entropy else None
    return logprobs, entropy


class _FrozenHeadLogprobs(torch.autograd.Function):
    """Log-probs through a frozen head, with d logprob / d hidden taken in the forward pass.

    A token's log-prob depends only on its own hidden state, so its gradient is one
    ``[H]`` vector per token, and the backward pass is ``grad_hidden = g[:, None] * that``.
    The entropy's gradient is rarely needed (it is usually only logged), so it is recomputed
    chunk by chunk in the backward pass only when the entropy was actually differentiated.
    """

    @staticmethod
    def forward(ctx, hidden, targets, head, chunk_size, with_entropy):
        ctx.set_materialize_grads(False)
        logprobs = torch.empty(hidden.shape[0], dtype=torch.float32, device=hidden.device)
        entropy = torch.empty_like(logprobs) if with_entropy else logprobs.new_empty(0)
        grad_logprobs = torch.empty_like(hidden)  # [N, H]: d logprob_i / d hidden_i
        for i in range(0, hidden.shape[0], chunk_size):
            rows = slice(i, i + chunk_size)
            with torch.enable_grad():
                h = hidden[rows].detach().requires_grad_()
                lp, ent = _chunk(head, h, targets[rows], with_entropy)
                (grad_logprobs[rows],) = torch.autograd.grad(lp.sum(), h)
            logprobs[rows] = lp.detach()
            if with_entropy:
                entropy[rows] = ent.detach()
        ctx.save_for_backward(hidden, targets, grad_logprobs)
        ctx.head, ctx.chunk_size = head, chunk_size
        return logprobs, entropy

    @staticmethod
    def backward(ctx, grad_logprobs_out, grad_entropy_out):
        hidden, targets, grad_logprobs = ctx.saved_tensors
        grad_hidden = torch.zeros_like(hidden)
        if grad_logprobs_out is not None:
            grad_hidden += grad_logprobs_out.unsqueeze(-1).to(hidden.dtype) * grad_logprobs
        if grad_entropy_out is not None and grad_entropy_out.numel():
            for i in range(0, hidden.shape[0], ctx.chunk_size):
                rows = slice(i, i + ctx.chunk_size)
                with torch.enable_grad():
                    h = hidden[rows].detach().requires_grad_()
                    _, ent = _chunk(ctx.head, h, targets[rows], True)
                    (g,) = torch.autograd.grad(ent, h, grad_entropy_out[rows])
                grad_hidden[rows] += g
        return grad_hidden, None, None, None, None
