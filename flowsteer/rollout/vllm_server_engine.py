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

Weight pushes: the policy's LoRA adapter is saved under a new name,
``{adapter_prefix}-{run_id}-v{version}``, and hot-loaded on every replica with ``POST /v1/load_lora_adapter`` (the server must run with ``--enable-lora``,
``--max-lora-rank`` at least the adapter's rank, and ``VLLM_ALLOW_RUNTIME_LORA_UPDATING=True``
in its environment). The engine then checks that ``GET /v1/models`` lists the adapter and that
a one-token completion with it succeeds, switches its requests to the new name, and unloads the
previous adapter. The adapter directory must be readable by the servers (same filesystem).
Full weights would go through vLLM 0.32's RL weight-transfer endpoints
(``/init_weight_transfer_engine``, ``/update_weights``: an NCCL or IPC channel between trainer
and server), which this engine does not implement; a fully fine-tuned policy uses `VLLMEngine`.

In a distributed run (DDP, FSDP2) every rank calls `sync_weights` together: the LoRA weights
are gathered to full tensors on all ranks (a collective under FSDP2), rank 0 alone writes the
adapter directory and pushes it to every rank's replicas, and the outcome (success or the error)
is broadcast, so all ranks switch to the same adapter name or fail together. The run id is
drawn by rank 0 at the first push of each fit (`begin_run`) and broadcast: a second run or a
resume against the same servers never reuses a name. Each rank may have its own replicas:
``base_urls`` is one list shared by all ranks, a list of lists (one per rank), or URLs with a
``{rank}`` placeholder (``http://127.0.0.1:80{rank}0`` → rank 1 uses ``…:8010``).

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
import uuid
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
            accepted and dropped): one list for every rank, a list of lists (index: the rank),
            or URLs with a ``{rank}`` placeholder filled with the rank.
        served_model_name: The base model's name on the servers (``--served-model-name``, or
            the model path they were started with); used until the first weight push.
        adapter_dir: Where pushed adapters are written, one sub-directory per version.
        adapter_prefix: Adapter names are ``{adapter_prefix}-{run_id}-v{version}``.
        request_timeout: Seconds one completion request may take before it is aborted.
        sync_timeout: Seconds each step of a weight push (load, list, probe) may take.
        max_concurrency: Most requests in flight at once, over all replicas.
        api_key_env: Name of the environment variable holding the servers' API key
            (``--api-key``); ``None``: no key.
    """

    def __init__(
        self,
        base_urls: str | Sequence[str] | Sequence[Sequence[str]],
        *,
        served_model_name: str,
        adapter_dir: str | Path,
        adapter_prefix: str = "flowsteer-policy",
        request_timeout: float = 600.0,
        sync_timeout: float = 120.0,
        max_concurrency: int = 256,
        api_key_env: str | None = None,
    ) -> None:
        entries = [base_urls] if isinstance(base_urls, str) else list(base_urls)
        if not entries:
            raise ValueError("base_urls must name at least one vllm serve replica")
        if all(isinstance(entry, str) for entry in entries):
            self._per_rank: list[list[str]] | None = None
            self._urls = [_clean(url, "base_urls") for url in entries]
        elif all(not isinstance(entry, str) for entry in entries):
            self._per_rank = []
            for rank, group in enumerate(entries):
                group = [group] if isinstance(group, str) else list(group)
                if not group:
                    raise ValueError(f"base_urls[{rank}] names no vllm serve replica")
                self._per_rank.append([_clean(url, f"base_urls[{rank}]") for url in group])
            self._urls = []
        else:
            raise ValueError("base_urls: mix of URLs and lists; give one list, or one per rank")
        if max_concurrency < 1:
            raise ValueError(f"max_concurrency must be at least 1, got {max_concurrency}")
        self.adapter_dir = Path(adapter_dir)
        self.adapter_prefix = adapter_prefix
        self.request_timeout = request_timeout
        self.sync_timeout = sync_timeout
        self.max_concurrency = max_concurrency
        self.api_key_env = api_key_env
        self.served_model_name = served_model_name
        self._model = served_model_name
        self._version = 0
        self._run_id: str | None = None

    def urls_for(self, rank: int, world_size: int = 1) -> list[str]:
        """The replicas rank ``rank`` sends its requests to."""
        if self._per_rank is not None:
            if len(self._per_rank) != world_size:
                raise ValueError(
                    f"base_urls has {len(self._per_rank)} lists of replicas but the run has "
                    f"{world_size} ranks; give one list per rank"
                )
            return self._per_rank[rank]
        return [url.replace("{rank}", str(rank)) for url in self._urls]

    @property
    def base_urls(self) -> list[str]:
        """This process's replicas (its rank's, in a distributed run)."""
        rank, world = _rank_world()
        return self.urls_for(rank, world)

    def all_urls(self) -> list[str]:
        """Every rank's replicas, each once: where rank 0 pushes adapters."""
        _, world = _rank_world()
        urls = [url for rank in range(world) for url in self.urls_for(rank, world)]
        return list(dict.fromkeys(urls))

    @property
    def run_id(self) -> str | None:
        """This fit's id in adapter names (``None`` until the first push)."""
        return self._run_id

    def begin_run(self) -> None:
        """Start a new fit: back to the base model, a fresh run id at the next push."""
        self._model, self._version, self._run_id = self.served_model_name, 0, None

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
        """Hot-load ``policy``'s LoRA adapter on every replica as ``{prefix}-{run}-v{version}``.

        In a distributed run every rank must call this (see the module notes): rank 0 writes
        and pushes, and all ranks end up on the same adapter or raise the same error.

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
        rank, world = _rank_world()
        if self._run_id is None:
            self._run_id = _broadcast(uuid.uuid4().hex[:8] if rank == 0 else None)
        name = f"{self.adapter_prefix}-{self._run_id}-v{version}"
        path = (self.adapter_dir / name).resolve()
        error: str | None = None
        try:
            # Collective under FSDP2 (the LoRA shards are gathered): every rank, in step.
            policy.save_adapter(path, write=rank == 0)
        except Exception as failure:
            error = f"saving the adapter on rank {rank}: {type(failure).__name__}: {failure}"
        if world > 1:
            error = _first_error(error)
        if error is None and rank == 0:
            error = await self._push(name, path)
        if world > 1:
            error = _broadcast(error)
        if error is not None:
            raise RuntimeError(error)
        self._model, self._version = name, version

    async def _push(self, name: str, path: Path) -> str | None:
        """Load ``name`` on every rank's replicas, then unload the one it replaces."""
        previous = self._model if self._version else None
        urls = self.all_urls()
        async with self._client(self.sync_timeout) as client:
            loads = [self._load(client, url, name, path) for url in urls]
            failures = [
                error
                for error in await asyncio.gather(*loads, return_exceptions=True)
                if isinstance(error, BaseException)
            ]
            if failures:
                return "; ".join(map(str, failures))
            if previous is not None and previous != name:
                await asyncio.gather(*(self._unload(client, url, previous) for url in urls))
        return None

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


def _clean(url: str, setting: str) -> str:
    if not isinstance(url, str) or not url.startswith(("http://", "https://")):
        raise ValueError(f"{setting}: {url!r} is not an http(s) URL")
    return url.rstrip("/").removesuffix("/v1")


def _rank_world() -> tuple[int, int]:
    """This process's rank and the world size (0, 1 outside torch.distributed)."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def _broadcast(value: Any) -> Any:
    """Rank 0's ``value`` on every rank (itself outside torch.distributed)."""
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return value
    box = [value]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def _first_error(error: str | None) -> str | None:
    """The first rank's error, if any rank has one (a collective)."""
    import torch.distributed as dist

    errors: list[str | None] = [None] * dist.get_world_size()
    dist.all_gather_object(errors, error)
    return next((e for e in errors if e is not None), None)


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
