"""`VLLMServerEngine`: rollouts on one or more running ``vllm serve`` replicas, over HTTP.

No vLLM import here: the engine speaks vLLM 0.32's OpenAI-compatible completions API
(``vllm/entrypoints/openai/completion/protocol.py``). Prompts go in as token-id lists; vLLM's
extra fields ``return_token_ids`` (the sampled ids, exactly) and ``logprobs=0`` (the sampled
token's log-prob) bring the turn back as ids, never as re-tokenised text. The log-probs are of
the distribution that sampled (``log_softmax(logits / T)``, what the trainer recomputes) only if
every server runs with ``--logprobs-mode processed_logprobs``: vLLM's default, ``raw_logprobs``,
ignores the temperature, and the client cannot choose the mode (see `VLLMEngine`). A server left
on the default shows, at a temperature other than 1, in ``sync/probe_logprob_diff`` and
``train/mismatch_*`` (about 0.05 nats per token at 0.7). A request's grammar constraint goes in
vLLM's extra field ``structured_outputs: {"grammar": ...}`` (renormalised log-probs, as in
`VLLMEngine`).

Weight pushes: the policy's LoRA adapter is saved under a new versioned name and hot-loaded on
every replica with ``POST /v1/load_lora_adapter`` (the server must run with ``--enable-lora``,
``--max-lora-rank`` at least the adapter's rank, and ``VLLM_ALLOW_RUNTIME_LORA_UPDATING=True``
in its environment). The engine then checks that ``GET /v1/models`` lists the adapter and that
a one-token completion with it succeeds, switches its requests to the new name, and unloads the
previous adapter. The adapter directory must be readable by the servers (same filesystem).
Full weights would go through vLLM 0.32's RL weight-transfer endpoints
(``/init_weight_transfer_engine``, ``/update_weights``: an NCCL or IPC channel between trainer
and server), which this engine does not implement; a fully fine-tuned policy uses `VLLMEngine`.

Requests are spread round-robin over the replicas by their position in the batch: rollouts
keep episodes in a fixed order, so each episode's turns keep landing on the replica that holds
its prefix cache. Failures (server down, timeouts, 4xx/5xx) come back as ``abort`` generations
with the reason; they never hang past ``request_timeout``. HTTP goes through aiohttp (the ``openai[aiohttp]``
dependency).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from flowsteer.rollout.engine import Generation, GenerationRequest, grammar_text

if TYPE_CHECKING:
    import aiohttp

    from flowsteer.rl.policy import Policy


class VLLMServerEngine:
    """Samples turns from ``vllm serve`` replicas; LoRA weight pushes by hot-loading adapters.

    Args:
        base_urls: Root URL of each replica (``http://host:port``; a trailing ``/v1`` is
            accepted and dropped).
        served_model_name: The base model's name on the servers (``--served-model-name``, or
            the model path they were started with); used until the first weight push.
        adapter_dir: Where pushed adapters are written, one sub-directory per version.
        adapter_prefix: Adapter names are ``{adapter_prefix}-v{version}``.
        request_timeout: Seconds one completion request may take before it is aborted.
        sync_timeout: Seconds each step of a weight push (load, list, probe) may take.
        max_concurrency: Most requests in flight at once, over all replicas.
        api_key_env: Name of the environment variable holding the servers' API key
            (``--api-key``); ``None``: no key.
    """

    def __init__(
        self,
        base_urls: str | Sequence[str],
        *,
        served_model_name: str,
        adapter_dir: str | Path,
        adapter_prefix: str = "flowsteer-policy",
        request_timeout: float = 600.0,
        sync_timeout: float = 120.0,
        max_concurrency: int = 256,
        api_key_env: str | None = None,
    ) -> None:
        urls = [base_urls] if isinstance(base_urls, str) else list(base_urls)
        if not urls:
            raise ValueError("base_urls must name at least one vllm serve replica")
        for url in urls:
            if not url.startswith(("http://", "https://")):
                raise ValueError(f"base_urls: {url!r} is not an http(s) URL")
        if max_concurrency < 1:
            raise ValueError(f"max_concurrency must be at least 1, got {max_concurrency}")
        self.base_urls = [url.rstrip("/").removesuffix("/v1") for url in urls]
        self.adapter_dir = Path(adapter_dir)
        self.adapter_prefix = adapter_prefix
        self.request_timeout = request_timeout
        self.sync_timeout = sync_timeout
        self.max_concurrency = max_concurrency
        self.api_key_env = api_key_env
        self._model = served_model_name
        self._version = 0

    @property
    def weights_version(self) -> int:
        """The version of the policy weights this engine serves (0: the servers' base model)."""
        return self._version

    @property
    def model_name(self) -> str:
        """The model (or adapter) name requests are sent to."""
        return self._model

    def _client(self, timeout: float) -> aiohttp.ClientSession:
        """A session for one call; sessions are bound to the event loop that uses them."""
        import aiohttp

        headers = {}
        if self.api_key_env is not None:
            key = os.environ.get(self.api_key_env)
            if not key:
                raise ValueError(f"api_key_env: environment variable {self.api_key_env} is unset")
            headers["Authorization"] = f"Bearer {key}"
        return aiohttp.ClientSession(
            timeout=aiohttp.ClientTimeout(total=timeout),
            headers=headers,
            connector=aiohttp.TCPConnector(limit=self.max_concurrency),
        )

    async def generate(self, requests: Sequence[GenerationRequest]) -> list[Generation]:
        """Send every request concurrently, round-robin over the replicas; results in order."""
        for i, request in enumerate(requests):
            grammar_text(request.constraint, "VLLMServerEngine", i)  # refuses what it cannot honour
        semaphore = asyncio.Semaphore(self.max_concurrency)
        async with self._client(self.request_timeout) as client:

            async def one(i: int, request: GenerationRequest) -> Generation:
                url = self.base_urls[i % len(self.base_urls)]
                async with semaphore:
                    return await self._complete(client, url, request)

            return list(await asyncio.gather(*(one(i, r) for i, r in enumerate(requests))))

    async def _complete(
        self, client: aiohttp.ClientSession, url: str, request: GenerationRequest
    ) -> Generation:
        sampling = request.sampling
        body = {
            "model": self._model,
            "prompt": list(request.prompt_ids),
            "max_tokens": sampling.max_tokens,
            "temperature": sampling.temperature,
            "top_p": sampling.top_p,
            "top_k": sampling.top_k,
            "seed": sampling.seed,
            "min_tokens": sampling.min_tokens,
            "stop_token_ids": list(sampling.stop_token_ids),
            "ignore_eos": True,  # only the request's stop tokens end a turn, as in VLLMEngine
            "logprobs": 0,
            "return_token_ids": True,
            "return_tokens_as_token_ids": True,
        }
        grammar = grammar_text(request.constraint, "VLLMServerEngine", 0)
        if grammar is not None:
            body["structured_outputs"] = {"grammar": grammar}
        try:
            status, text = await _post(client, f"{url}/v1/completions", body)
        except _transport_errors() as error:
            return _abort(f"{url}/v1/completions: {_describe(error, self.request_timeout)}")
        if status >= 400:
            return _abort(f"{url}/v1/completions answered {status}: {text[:500]}")
        try:
            return _to_generation(json.loads(text)["choices"][0])
        except (ValueError, KeyError, IndexError, TypeError) as error:
            return _abort(f"{url}/v1/completions: malformed response ({error}): {text[:500]}")

    async def sync_weights(self, policy: Policy, version: int) -> None:
        """Hot-load ``policy``'s LoRA adapter on every replica as ``{prefix}-v{version}``.

        Raises:
            ValueError: ``policy`` is not a LoRA policy.
            RuntimeError: A replica refused the adapter, does not list it, or cannot serve it;
                the engine then keeps serving the previous version.
        """
        if not policy.is_lora:
            raise ValueError(
                "VLLMServerEngine pushes weights as LoRA adapters; a fully fine-tuned policy "
                "needs VLLMEngine (full weights over HTTP would need vLLM's weight-transfer API)"
            )
        name = f"{self.adapter_prefix}-v{version}"
        path = (self.adapter_dir / name).resolve()
        await asyncio.to_thread(policy.save_adapter, path)
        previous = self._model if self._version else None
        async with self._client(self.sync_timeout) as client:
            loads = [self._load(client, url, name, path) for url in self.base_urls]
            failures = [
                error
                for error in await asyncio.gather(*loads, return_exceptions=True)
                if isinstance(error, BaseException)
            ]
            if failures:
                raise RuntimeError("; ".join(map(str, failures))) from failures[0]
            self._model, self._version = name, version
            if previous is not None and previous != name:
                await asyncio.gather(
                    *(self._unload(client, url, previous) for url in self.base_urls)
                )

    async def _load(self, client: aiohttp.ClientSession, url: str, name: str, path: Path) -> None:
        """Load adapter ``name`` on one replica and prove that it is listed and served."""
        try:
            status, text = await _post(
                client, f"{url}/v1/load_lora_adapter", {"lora_name": name, "lora_path": str(path)}
            )
            if status >= 400:
                raise RuntimeError(
                    f"{url} refused LoRA adapter {name} from {path} ({status}): {text[:500]} "
                    "(is the server running with --enable-lora and "
                    "VLLM_ALLOW_RUNTIME_LORA_UPDATING=True?)"
                )
            async with client.get(f"{url}/v1/models") as listed:
                listed.raise_for_status()
                names = [entry["id"] for entry in (await listed.json())["data"]]
            if name not in names:
                raise RuntimeError(f"{url} loaded LoRA adapter {name} but lists only {names}")
            probe = {"model": name, "prompt": [0], "max_tokens": 1, "temperature": 0}
            status, text = await _post(client, f"{url}/v1/completions", probe)
            if status >= 400:
                raise RuntimeError(
                    f"{url} lists LoRA adapter {name} but cannot serve it ({status}): {text[:500]}"
                )
        except _transport_errors() as error:
            raise RuntimeError(
                f"weight push to {url} failed: {_describe(error, self.sync_timeout)}"
            ) from error

    async def _unload(self, client: aiohttp.ClientSession, url: str, name: str) -> None:
        """Free the replaced adapter's slot; a failure here only costs memory."""
        with contextlib.suppress(*_transport_errors()):
            await _post(client, f"{url}/v1/unload_lora_adapter", {"lora_name": name})


def _transport_errors() -> tuple[type[BaseException], ...]:
    """What a request can fail with below HTTP (aiohttp is imported only once it is used)."""
    import aiohttp

    return (aiohttp.ClientError, asyncio.TimeoutError)


async def _post(client: aiohttp.ClientSession, url: str, body: dict[str, Any]) -> tuple[int, str]:
    async with client.post(url, json=body) as response:
        return response.status, await response.text()


def _describe(error: BaseException, timeout: float) -> str:
    if isinstance(error, asyncio.TimeoutError):
        return f"no answer within {timeout} s (timed out)"
    return f"{type(error).__name__}: {error}"


def _abort(error: str) -> Generation:
    return Generation([], [], "abort", error)


def _to_generation(choice: dict[str, Any]) -> Generation:
    """One completions ``choice`` (with ``token_ids`` and ``logprobs``) as a `Generation`."""
    token_ids = [int(token) for token in choice["token_ids"]]
    logprobs = [float(lp) for lp in choice["logprobs"]["token_logprobs"]]
    if len(logprobs) != len(token_ids):
        return _abort(f"server returned {len(logprobs)} log-probs for {len(token_ids)} tokens")
    reason = choice.get("finish_reason")
    if reason in ("stop", "length"):
        return Generation(token_ids, logprobs, reason)
    return Generation(token_ids, logprobs, "abort", f"server finished with {reason!r}")


__all__ = ["VLLMServerEngine"]
