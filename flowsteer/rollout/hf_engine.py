"""`HFEngine`: the `Engine` on the live policy model, with its own KV-cached decoding loop (CPU).

The prompts are prefilled in one left-padded batch, then every still-active row decodes one
token per step; a row leaves the batch, and its KV cache rows are dropped, as soon as it samples
one of its own stop ids or reaches its own budget. That is what transformers' ``generate`` does
not do (it runs finished rows until the last one ends, and stops a whole batch on one shared
stop set), and it skips ``generate``'s per-step machinery (logits processors, a second draw).
Sampling is `RowSampler`'s: every row draws from its own counter-based stream (seeded from the
request's seed), so:

* each request has its own temperature, top-k, top-p, token budget, stop ids and seed inside
  one batch;
* a seeded request samples the same tokens whatever else is in the batch (up to the float
  noise that padding can add to the logits), like vLLM's per-request seeds;
* decoding never draws from torch's global RNG.

Log-probs: the returned log-prob of a sampled token is under the TEMPERED model distribution,
``log_softmax(logits / T)`` of the unprocessed logits at the request's `SamplingParams.logprob_temperature`, before top-k/top-p.
That is what the trainer recomputes (`Policy.token_logprobs` at the sampling temperature), so
without truncation engine and trainer agree exactly and TIS measures only real mismatch. With
top-k/top-p the token was drawn from the truncated, renormalised distribution, whose log-prob is
higher by minus the log of the kept mass; neither side counts that (see `VLLMEngine`, which does).

Constraints. A request may carry a grammar (`GenerationRequest.constraint` with an ``ebnf``
text, e.g. `ActionConstraint`); its row gets an xgrammar ``GrammarMatcher`` in the same
per-row sampling step, so constrained and unconstrained rows share a batch. Each step the matcher's
bitmask sets the disallowed logits to -inf after tempering (and before top-k/top-p), the
sampled token advances the matcher, and once the grammar is complete only the request's stop
tokens are allowed, which ends the turn. The log-prob of a constrained token is under the
distribution actually sampled from: the tempered logits with the mask, renormalised over the
allowed tokens (what vLLM returns too: it applies the grammar bitmask to the logits before its
sampler computes ``processed_logprobs``). `Generation.constraint_mass` reports how much probability
the raw policy put on the allowed tokens.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import torch

from flowsteer.rollout.engine import (
    FinishReason,
    Generation,
    GenerationRequest,
    grammar_text,
)
from flowsteer.rollout.row_sampler import RowSampler

if TYPE_CHECKING:
    from flowsteer.rl.policy import Policy


class _Rows:
    """Per-row decoding state of one batch: how each row samples, stops and is constrained.

    Rows are addressed by their index in the batch. `choose` works on the rows still decoding
    (finished rows leave the batch); `select` sets them and indexes the per-row tensors once.
    """

    def __init__(
        self,
        requests: Sequence[GenerationRequest],
        matchers: Sequence[Any | None],
        vocab_size: int,
    ):
        params = [r.sampling for r in requests]
        self.draw = RowSampler(
            [p.temperature for p in params],
            [p.top_k for p in params],
            [p.top_p for p in params],
            [p.seed for p in params],
        )
        self.max_tokens = [p.max_tokens for p in params]
        self.min_tokens = [p.min_tokens for p in params]
        self.stops = [frozenset(p.stop_token_ids) for p in params]
        # [B, V] stop ids by row, only where some row holds them back (min_tokens).
        self.stop_mask: torch.Tensor | None = None
        if any(p.min_tokens > 0 and p.stop_token_ids for p in params):
            self.stop_mask = torch.zeros(len(params), vocab_size, dtype=torch.bool)
            for row, stops in enumerate(self.stops):
                self.stop_mask[row, [t for t in stops if 0 <= t < vocab_size]] = True
        # Constrained rows: an xgrammar matcher each.
        self.matchers = list(matchers)
        self.masses: list[list[float]] = [[] for _ in params]
        self.errors: list[str | None] = [None] * len(params)
        self.bitmask = None
        self.select(list(range(len(params))))

    def select(self, active: list[int]) -> None:
        """The rows still decoding (batch indices, ascending)."""
        self.active = active
        index = torch.tensor(active)
        self.active_draw = self.draw.select(index)
        self.active_min_tokens = torch.tensor([self.min_tokens[row] for row in active])
        self.held_until = max(self.min_tokens[row] for row in active)
        self.active_stop_mask = None if self.stop_mask is None else self.stop_mask[index]

    def choose(self, logits: torch.Tensor, step: int) -> tuple[torch.Tensor, torch.Tensor]:
        """``(tokens [A], logprobs [A])`` of the active rows from their raw logits ``[A, V]``.

        A free row's log-prob is of the tempered ``log_softmax(logits / T)`` (T = 1 for greedy
        rows: `SamplingParams.logprob_temperature`), before top-k/top-p and before ``min_tokens``
        holds its stop ids: what the trainer recomputes. A constrained row's is renormalised
        over the tokens its grammar allows.
        """
        active = self.active
        scaled = self.active_draw.tempered(logits)  # [A, V]
        norm = scaled.logsumexp(dim=-1)  # [A]
        constrained = [
            j
            for j, row in enumerate(active)
            if self.matchers[row] is not None and not self.matchers[row].is_terminated()
        ]
        tempered = scaled
        if constrained:
            import xgrammar

            if self.bitmask is None:
                self.bitmask = xgrammar.allocate_token_bitmask(len(self.matchers), logits.shape[1])
            for j in constrained:
                self.matchers[active[j]].fill_next_token_bitmask(self.bitmask, j)
            tempered = scaled.clone()
            # Mask after tempering (and before top-k/top-p): a -inf logit stays -inf at any
            # temperature, so the sampled distribution is the tempered one over allowed tokens.
            xgrammar.apply_token_bitmask_inplace(scaled, self.bitmask, indices=constrained)
        masked = self._hold_stops(scaled, step)
        chosen = self.active_draw.sample(masked, step)  # [A]
        logprobs = tempered.gather(1, chosen[:, None]).squeeze(1) - norm  # [A]
        if constrained:
            logprobs = self._advance(constrained, norm, masked, chosen, logprobs, step)
        return chosen, logprobs

    def _hold_stops(self, scaled: torch.Tensor, step: int) -> torch.Tensor:
        """Rows short of their ``min_tokens`` cannot stop: their stop ids get -inf (unless
        nothing else is allowed, e.g. a grammar that has ended)."""
        if self.active_stop_mask is None or step >= self.held_until:
            return scaled
        early = step < self.active_min_tokens  # [A]
        held = scaled.masked_fill(self.active_stop_mask & early[:, None], float("-inf"))
        stuck = torch.isinf(held).all(dim=-1)  # [A]
        return torch.where(stuck[:, None], scaled, held)

    def _advance(
        self,
        constrained: list[int],
        norm: torch.Tensor,
        masked: torch.Tensor,
        chosen: torch.Tensor,
        logprobs: torch.Tensor,
        step: int,
    ) -> torch.Tensor:
        """Constrained rows' log-probs (renormalised over the allowed tokens) and allowed mass;
        each row's matcher takes its sampled token. ``norm``: each active row's log-normaliser
        of the tempered logits before any mask, ``[A]``."""
        index = torch.tensor(constrained)
        raw_norm = norm[index]  # [R]
        allowed_norm = masked[index].logsumexp(dim=-1)  # [R]
        picked = masked[index, chosen[index]]  # [R]
        logprobs = logprobs.clone()
        logprobs[index] = picked - allowed_norm
        for j, mass in zip(constrained, (allowed_norm - raw_norm).exp().tolist(), strict=True):
            row, token = self.active[j], int(chosen[j])
            self.masses[row].append(mass)
            if not self.matchers[row].accept_token(token):
                self.errors[row] = f"the grammar rejected token {token} at step {step}"
        return logprobs


class HFEngine:
    """Samples turns on the live policy model with its own KV-cached decoding loop.

    Args:
        model: The policy (a transformers causal LM or a peft model wrapping one). Generation
            runs in eval mode; the model's train/eval mode is restored afterwards.
        tokenizer: Its tokenizer (for the pad id).
        batch_size: Most requests per ``generate`` call; ``None``: all at once.
        own_weights: ``model`` is the engine's own copy of the policy (asynchronous rollouts,
            where the update runs during generation): `sync_weights` copies the policy's
            weights into it. (Decoding never draws from the global torch RNG, which the
            trainer's thread owns; only a request without a seed takes one from it, up front.)
    """

    def __init__(
        self,
        model: torch.nn.Module,
        tokenizer: Any,
        *,
        batch_size: int | None = None,
        own_weights: bool = False,
    ):
        if batch_size is not None and batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {batch_size}")
        self.model = model
        self.tokenizer = tokenizer
        self.batch_size = batch_size
        self.own_weights = own_weights
        pad = tokenizer.pad_token_id
        self.pad_token_id = pad if pad is not None else tokenizer.eos_token_id
        self._version = 0
        self._compiler: Any = None

    @property
    def vocab_size(self) -> int:
        """The width of the model's logits (the grammar bitmask's size)."""
        head = self.model.get_output_embeddings()
        if head is not None:
            return int(head.weight.shape[0])
        return int(self.model.config.vocab_size)

    def _matcher(self, ebnf: str, stops: tuple[int, ...]) -> Any:
        """A fresh xgrammar matcher of ``ebnf`` that ends on ``stops`` (compiled grammars are
        cached by text in the compiler)."""
        try:
            import xgrammar
        except ImportError as exc:  # pragma: no cover - xgrammar is a dependency
            raise RuntimeError(
                "HFEngine: constrained decoding needs xgrammar (pip install xgrammar)"
            ) from exc
        if self._compiler is None:
            info = xgrammar.TokenizerInfo.from_huggingface(
                self.tokenizer, vocab_size=self.vocab_size
            )
            self._compiler = xgrammar.GrammarCompiler(info, max_threads=1)
        compiled = self._compiler.compile_grammar(ebnf)
        return xgrammar.GrammarMatcher(compiled, override_stop_tokens=list(stops) or None)

    @property
    def weights_version(self) -> int:
        return self._version

    async def sync_weights(self, policy: Policy, version: int) -> None:
        """Records ``version``; with ``own_weights`` first copies the policy's weights in
        (otherwise the engine samples the live model: nothing to copy)."""
        if self.own_weights:
            theirs = policy.model.state_dict()
            mine = self.model.state_dict()
            if theirs.keys() != mine.keys():
                missing = sorted(set(mine) ^ set(theirs))[:3]
                raise ValueError(
                    f"HFEngine: the policy's parameters differ from the engine's copy "
                    f"(e.g. {missing}); build the engine from a copy of policy.model"
                )
            with torch.no_grad():
                for name, value in mine.items():
                    value.copy_(theirs[name])
        self._version = int(version)

    async def generate(self, requests: Sequence[GenerationRequest]) -> list[Generation]:
        """Sample every request; results in request order."""
        return await asyncio.to_thread(self.generate_sync, requests)

    def generate_sync(self, requests: Sequence[GenerationRequest]) -> list[Generation]:
        """`generate` without the event loop (the same results)."""
        for i, r in enumerate(requests):
            grammar_text(r.constraint, "HFEngine", i)  # refuses constraints it cannot honour
            if len(r.prompt_ids) == 0:
                raise ValueError(f"request {i} has an empty prompt")
            if r.sampling.max_tokens < 1:
                raise ValueError(f"request {i}: max_tokens must be at least 1")
        results: list[Generation] = []
        was_training = self.model.training
        self.model.eval()
        try:
            step = self.batch_size or len(requests)
            for start in range(0, len(requests), step):
                results += self._generate(requests[start : start + step])
        finally:
            self.model.train(was_training)
        return results

    def _forward(self, input_ids, attention_mask, position_ids, cache) -> torch.Tensor:
        """``[B, V]`` float32 logits of each row's last position, the cache extended."""
        out = self.model(
            input_ids=input_ids,
            attention_mask=attention_mask,
            position_ids=position_ids,
            past_key_values=cache,
            use_cache=True,
            logits_to_keep=1,
        )
        return out.logits[:, -1].float().cpu()

    @torch.inference_mode()
    def _generate(self, requests: Sequence[GenerationRequest]) -> list[Generation]:
        """Prefill the left-padded prompts, then one token per active row per step; a row leaves
        the batch (and the KV cache) as soon as it stops or reaches its budget."""
        from transformers import DynamicCache

        device = next(self.model.parameters()).device
        width = max(len(r.prompt_ids) for r in requests)
        input_ids = torch.full((len(requests), width), self.pad_token_id, dtype=torch.long)
        mask = torch.zeros((len(requests), width), dtype=torch.long)
        for row, r in enumerate(requests):
            n = len(r.prompt_ids)
            input_ids[row, width - n :] = torch.tensor(list(r.prompt_ids), dtype=torch.long)
            mask[row, width - n :] = 1
        matchers = [
            None
            if r.constraint is None
            else self._matcher(grammar_text(r.constraint, "", i), tuple(r.sampling.stop_token_ids))
            for i, r in enumerate(requests)
        ]
        rows = _Rows(requests, matchers, self.vocab_size)
        cache = DynamicCache(config=self.model.config)
        mask = mask.to(device)
        position = (mask.cumsum(-1) - 1).clamp(min=0)  # [B, W]
        logits = self._forward(input_ids.to(device), mask, position, cache)  # [B, V]
        position = position[:, -1:] + 1  # [A, 1]: the next token's position
        tokens: list[list[int]] = [[] for _ in requests]
        logprobs: list[list[float]] = [[] for _ in requests]
        reasons: list[FinishReason] = ["length"] * len(requests)
        for step in range(max(r.sampling.max_tokens for r in requests)):
            chosen, lps = rows.choose(logits, step)
            keep = []
            for j, (row, token, lp) in enumerate(
                zip(rows.active, chosen.tolist(), lps.tolist(), strict=True)
            ):
                tokens[row].append(token)
                logprobs[row].append(lp)
                if token in rows.stops[row]:
                    reasons[row] = "stop"
                elif rows.errors[row] is None and len(tokens[row]) < rows.max_tokens[row]:
                    keep.append(j)
            if not keep:
                break
            if len(keep) < len(rows.active):  # finished rows leave the batch and the cache
                index = torch.tensor(keep)
                on_device = index.to(device)
                cache.batch_select_indices(on_device)
                mask, position, chosen = mask[on_device], position[on_device], chosen[index]
                rows.select([rows.active[j] for j in keep])
            mask = torch.cat([mask, mask.new_ones(len(keep), 1)], dim=1)
            logits = self._forward(chosen[:, None].to(device), mask, position, cache)
            position = position + 1
        results = []
        for row in range(len(requests)):
            if rows.errors[row] is not None:
                message = f"constrained decoding: {rows.errors[row]}"
                results.append(Generation(tokens[row], logprobs[row], "abort", message))
                continue
            masses = rows.masses[row]
            mass = sum(masses) / len(masses) if masses else None
            results.append(
                Generation(tokens[row], logprobs[row], reasons[row], constraint_mass=mass)
            )
        return results


__all__ = ["HFEngine"]
