"""`HFEngine`: the `Engine` on transformers ``generate`` with the live policy model (CPU).

Batched with left padding. Sampling is done by one logits processor that draws every row's
token from that row's own ``torch.Generator`` (seeded from the request's seed) and hands
``generate`` a one-hot choice, so:

* each request has its own temperature, top-k, top-p, token budget and seed inside one batch;
* a seeded request samples the same tokens whatever else is in the batch (up to the float
  noise that padding can add to the logits), like vLLM's per-request seeds.

Log-probs: the returned log-prob of a sampled token is under the TEMPERED model distribution,
``log_softmax(logits / T)`` of the unprocessed logits (read from ``generate``'s
``output_logits``) at the request's `SamplingParams.logprob_temperature`, before top-k/top-p.
That is what the trainer recomputes (`Policy.token_logprobs` at the sampling temperature), so
without truncation engine and trainer agree exactly and TIS measures only real mismatch. With
top-k/top-p the token was drawn from the truncated, renormalised distribution, whose log-prob is
higher by minus the log of the kept mass; neither side counts that (see `VLLMEngine`, which does).

Constraints. A request may carry a grammar (`GenerationRequest.constraint` with an ``ebnf``
text, e.g. `ActionConstraint`); its row gets an xgrammar ``GrammarMatcher`` inside the same
per-row sampler, so constrained and unconstrained rows share a batch. Each step the matcher's
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
    SamplingParams,
    grammar_text,
)
from flowsteer.rollout.row_sampler import RowSampler

if TYPE_CHECKING:
    from flowsteer.rl.policy import Policy


class _RowSampler:
    """A logits processor that samples each row with its own settings and generator."""

    def __init__(
        self,
        params: Sequence[SamplingParams],
        prompt_len: int,
        force_id: int | None,
        matchers: Sequence[Any | None] = (),
        vocab_size: int = 0,
    ):
        self.prompt_len = prompt_len
        self.force_id = force_id
        self.params = list(params)
        self.draw = RowSampler(
            [p.temperature for p in self.params],
            [p.top_k for p in self.params],
            [p.top_p for p in self.params],
            [p.seed for p in self.params],
        )
        self.max_tokens = torch.tensor([p.max_tokens for p in self.params], dtype=torch.long)
        self.min_tokens = torch.tensor([p.min_tokens for p in self.params], dtype=torch.long)
        self.stop_ids = torch.tensor(sorted({t for p in self.params for t in p.stop_token_ids}))
        # Constrained rows: an xgrammar matcher each; what they sampled is recorded per step.
        self.matchers = list(matchers) or [None] * len(self.params)
        self.logprobs: list[list[float]] = [[] for _ in self.params]
        self.masses: list[list[float]] = [[] for _ in self.params]
        self.errors: list[str | None] = [None] * len(self.params)
        self.bitmask = None
        if any(m is not None for m in self.matchers):
            import xgrammar

            self.bitmask = xgrammar.allocate_token_bitmask(len(self.params), vocab_size)

    def _constrained_rows(self, step: int) -> list[int]:
        """Rows whose grammar still chooses the next token."""
        return [
            row
            for row, m in enumerate(self.matchers)
            if m is not None
            and self.errors[row] is None
            and step < int(self.max_tokens[row])
            and not m.is_terminated()
        ]

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        step = input_ids.shape[1] - self.prompt_len
        logits = scores.float().cpu()  # [B, V]
        scaled = self.draw.tempered(logits)
        rows = self._constrained_rows(step)
        # Log-probs and the allowed mass are read from the TEMPERED logits (greedy rows: T = 1),
        # the distribution the trainer recomputes; constrained rows renormalise over the grammar.
        tempered = scaled
        if rows:
            import xgrammar

            for row in rows:
                self.matchers[row].fill_next_token_bitmask(self.bitmask, row)
            tempered = scaled.clone()
            # Mask after tempering (and before top-k/top-p): a -inf logit stays -inf at any
            # temperature, so the sampled distribution is the tempered one over allowed tokens.
            xgrammar.apply_token_bitmask_inplace(scaled, self.bitmask, indices=rows)
        masked = self._hold_stops(scaled, step)
        chosen = self.draw.sample(masked, step)
        if rows:
            self._advance(rows, tempered, masked, chosen, step)
        if self.force_id is not None:
            # Past its own budget a row emits a stop id so generate marks it done; the engine
            # cuts the row at its budget, so this token is never returned.
            chosen = torch.where(step >= self.max_tokens, self.force_id, chosen)
        out = torch.full_like(scores, float("-inf"))
        out[torch.arange(out.shape[0]), chosen.to(out.device)] = 0.0
        return out

    def _hold_stops(self, scaled: torch.Tensor, step: int) -> torch.Tensor:
        """Rows short of their ``min_tokens`` cannot stop: their stop ids get -inf (unless
        nothing else is allowed, e.g. a grammar that has ended)."""
        early = (step < self.min_tokens).nonzero().flatten()
        if not len(early) or not len(self.stop_ids):
            return scaled
        held = scaled.clone()
        held[early[:, None], self.stop_ids[None, :]] = float("-inf")
        stuck = torch.isinf(held[early]).all(dim=-1)
        held[early[stuck]] = scaled[early[stuck]]
        return held

    def _advance(
        self,
        rows: list[int],
        logits: torch.Tensor,
        masked: torch.Tensor,
        chosen: torch.Tensor,
        step: int,
    ) -> None:
        """Record each constrained row's log-prob (renormalised over the allowed tokens) and
        allowed mass, and advance its matcher with the sampled token."""
        index = torch.tensor(rows)
        raw_norm = logits[index].logsumexp(dim=-1)  # [R]
        allowed_norm = masked[index].logsumexp(dim=-1)  # [R]
        picked = masked[index, chosen[index]]  # [R]
        for j, row in enumerate(rows):
            token = int(chosen[row])
            self.logprobs[row].append(float(picked[j] - allowed_norm[j]))
            self.masses[row].append(float((allowed_norm[j] - raw_norm[j]).exp()))
            if not self.matchers[row].accept_token(token):
                self.errors[row] = f"the grammar rejected token {token} at step {step}"


class HFEngine:
    """Samples turns with transformers ``generate`` on the live policy model.

    Args:
        model: The policy (a transformers causal LM or a peft model wrapping one). Generation
            runs in eval mode; the model's train/eval mode is restored afterwards.
        tokenizer: Its tokenizer (for the pad id).
        batch_size: Most requests per ``generate`` call; ``None``: all at once.
        own_weights: ``model`` is the engine's own copy of the policy (asynchronous rollouts,
            where the update runs during generation): `sync_weights` copies the policy's
            weights into it, and generation draws nothing from the global torch RNG (the rows'
            own generators choose every token), which the trainer's thread owns.
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
        # Rows stop on their group's stop ids, so requests with different stop sets never share
        # a generate call (a row must not stop on another request's stop token).
        groups: dict[tuple[int, ...], list[int]] = {}
        for i, r in enumerate(requests):
            groups.setdefault(tuple(r.sampling.stop_token_ids), []).append(i)
        results: list[Generation | None] = [None] * len(requests)
        was_training = self.model.training
        self.model.eval()
        try:
            for stops, members in groups.items():
                step = self.batch_size or len(members)
                for start in range(0, len(members), step):
                    chunk = members[start : start + step]
                    generated = self._generate([requests[i] for i in chunk], stops)
                    for i, g in zip(chunk, generated, strict=True):
                        results[i] = g
        finally:
            self.model.train(was_training)
        return [g for g in results if g is not None]

    @torch.no_grad()
    def _generate(
        self, requests: Sequence[GenerationRequest], stops: tuple[int, ...]
    ) -> list[Generation]:
        from transformers import GenerationConfig, LogitsProcessorList

        device = next(self.model.parameters()).device
        width = max(len(r.prompt_ids) for r in requests)
        input_ids = torch.full((len(requests), width), self.pad_token_id, dtype=torch.long)
        attention_mask = torch.zeros((len(requests), width), dtype=torch.long)
        for row, r in enumerate(requests):
            n = len(r.prompt_ids)
            input_ids[row, width - n :] = torch.tensor(list(r.prompt_ids), dtype=torch.long)
            attention_mask[row, width - n :] = 1
        max_new = max(r.sampling.max_tokens for r in requests)
        matchers = [
            None
            if r.constraint is None
            else self._matcher(grammar_text(r.constraint, "", i), stops)
            for i, r in enumerate(requests)
        ]
        sampler = _RowSampler(
            [r.sampling for r in requests],
            width,
            stops[0] if stops else None,
            matchers,
            self.vocab_size if any(m is not None for m in matchers) else 0,
        )
        # The sampler hands generate a one-hot row: argmax picks the same token as a draw,
        # without the global RNG (an own-weights engine runs beside the trainer's thread).
        draw = {} if self.own_weights else {"temperature": 1.0, "top_k": 0, "top_p": 1.0}
        config = GenerationConfig(
            do_sample=not self.own_weights,
            **draw,
            max_new_tokens=max_new,
            eos_token_id=list(stops),  # [] (not None: that means "the model's default")
            pad_token_id=self.pad_token_id,
            output_logits=True,
            return_dict_in_generate=True,
        )
        out = self.model.generate(
            input_ids=input_ids.to(device),
            attention_mask=attention_mask.to(device),
            generation_config=config,
            logits_processor=LogitsProcessorList([sampler]),
        )
        new = out.sequences[:, width:].cpu()  # [B, N]
        logits = torch.stack(out.logits, dim=1).float().cpu()  # [B, N, V], raw
        # The distribution each row sampled from (before top-k/top-p), as the trainer scores it.
        temperature = torch.tensor([r.sampling.logprob_temperature for r in requests])  # [B]
        tempered = logits / temperature[:, None, None]  # [B, N, V]
        logprobs = tempered.log_softmax(dim=-1).gather(2, new[:, :, None]).squeeze(2)  # [B, N]
        results = []
        stop_set = set(stops)
        for row, r in enumerate(requests):
            ids = new[row, : r.sampling.max_tokens].tolist()
            lps = logprobs[row, : r.sampling.max_tokens].tolist()
            cut = next((k for k, t in enumerate(ids) if t in stop_set), None)
            reason: FinishReason = "length"
            if cut is not None:
                ids, lps, reason = ids[: cut + 1], lps[: cut + 1], "stop"
            if matchers[row] is None:
                results.append(Generation(ids, lps, reason))
                continue
            lps = sampler.logprobs[row][: len(ids)]
            masses = sampler.masses[row][: len(ids)]
            error = sampler.errors[row]
            if error is None and len(lps) != len(ids):
                error = f"the grammar matcher saw {len(lps)} of {len(ids)} tokens"
            if error is not None:
                results.append(Generation(ids, lps, "abort", f"constrained decoding: {error}"))
                continue
            mass = sum(masses) / len(masses) if masses else None
            results.append(Generation(ids, lps, reason, constraint_mass=mass))
        return results


__all__ = ["HFEngine"]
