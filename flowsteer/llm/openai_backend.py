"""Backend LLM behind any OpenAI-compatible server (vLLM, SGLang, Ollama, hosted APIs).

Uses the official `openai.AsyncOpenAI` client for the wire format, but with the client's own
retries switched off: the retry policy here (exponential backoff with full jitter, Retry-After
honoured and capped, only on timeouts, connection errors, 408/429 and 5xx) is explicit, tested
against a real socket, and counted in `stats`. Every failure ends as a `Completion` with
`error` set, so one flaky request never aborts an episode.

The API key is read from the environment variable *named* by `api_key_env` when a client is
built; it is never stored on the backend, so it cannot leak through config, repr, logs,
error values or pickles.

Requests go through the client's documented raw route (``client.post(..., cast_to=Response)``)
and the JSON is parsed here: the typed ``chat.completions.create`` path re-validates the
request TypedDicts and builds pydantic models that are thrown away, which doubles the client's
CPU per call, and at hundreds of concurrent 50 ms calls that CPU, not the server, sets the wall
time. For the same reason the aiohttp transport (``openai[aiohttp]``) is used when installed.

HTTP clients are bound to the event loop that created them, and a backend may serve several
``asyncio.run()`` calls in sequence, so one client (and one concurrency semaphore) is kept per
running loop, created lazily on first use inside that loop.
"""

from __future__ import annotations

import asyncio
import email.utils
import importlib.util
import json
import os
import random
import threading
import time
import weakref
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from flowsteer.llm.backend import (
    BackendStats,
    Completion,
    Message,
    SamplingParams,
    Usage,
    validate_messages,
)

RETRYABLE_STATUS = frozenset({408, 429})
"""4xx statuses worth retrying; every 5xx is retried too, every other 4xx is not."""


@dataclass
class _LoopState:
    """What must not cross event loops: the HTTP client and the concurrency semaphore."""

    client: Any  # openai.AsyncOpenAI; typed loosely so the module imports without openai
    semaphore: asyncio.Semaphore
    closer: Any = None  # the async generator that closes `client` when the loop shuts down


async def _close_at_loop_shutdown(client: Any) -> Any:
    """Close `client` when its loop runs ``shutdown_asyncgens`` (``asyncio.run`` does).

    Advanced once, this generator is registered with the loop's async-generator hooks, so the
    loop itself closes the client while it can still run the close coroutine; otherwise every
    ``asyncio.run`` that forgot `aclose` would leak sockets (and aiohttp warns about it).
    """
    try:
        yield
    finally:
        await client.close()


class OpenAIBackend:
    """Chat completions from an OpenAI-compatible server, with retries and a concurrency cap.

    Args:
        model: Model name sent in each request (what the server serves, e.g. the vLLM
            ``--served-model-name``).
        base_url: Server root including ``/v1``.
        api_key_env: *Name* of the environment variable holding the API key. ``None`` for
            servers without auth (a placeholder key is sent; ``OPENAI_API_KEY`` is then *not*
            read, so a real key never goes to a server that did not ask for one). If the named
            variable is unset or empty, construction raises `ValueError` (fail at config time,
            not mid-training); if it disappears later, calls return an error value.
        timeout_s: Deadline for one request (connect to last byte); a request past it counts
            as a timeout and is retried.
        max_retries: Retries after the first attempt for retryable failures.
        backoff_base_s: First backoff ceiling; attempt k waits uniform(0, base * 2**(k-1)).
        backoff_max_s: Largest backoff ceiling (full jitter is drawn below it).
        retry_after_max_s: Cap on a server's ``Retry-After``; the wait is the header value,
            never more than this.
        max_concurrency: Most requests in flight at once from this backend, per event loop.
        temperature: Default temperature when a call does not set one.
        max_tokens: Default completion budget when a call does not set one.
        top_p: Default nucleus mass when a call does not set one.
        seed: Seed for the backoff jitter (``None``: nondeterministic).
        http_transport: ``"aiohttp"`` (the ``openai[aiohttp]`` extra; about half the CPU per
            request under high concurrency), ``"httpx"`` (the client's default), or ``"auto"``
            (aiohttp when installed, else httpx).
    """

    def __init__(
        self,
        model: str,
        base_url: str = "https://api.openai.com/v1",
        api_key_env: str | None = "OPENAI_API_KEY",
        timeout_s: float = 60.0,
        max_retries: int = 4,
        backoff_base_s: float = 0.5,
        backoff_max_s: float = 8.0,
        retry_after_max_s: float = 30.0,
        max_concurrency: int = 32,
        temperature: float = 0.7,
        max_tokens: int = 1024,
        top_p: float = 1.0,
        seed: int | None = None,
        http_transport: Literal["auto", "httpx", "aiohttp"] = "auto",
    ) -> None:
        if not model:
            raise ValueError("model must be a non-empty string")
        if not base_url.startswith(("http://", "https://")):
            raise ValueError(f"base_url must start with http:// or https://, got {base_url!r}")
        for name, value in (
            ("timeout_s", timeout_s),
            ("backoff_max_s", backoff_max_s),
            ("max_concurrency", max_concurrency),
        ):
            if value <= 0:
                raise ValueError(f"{name} must be > 0, got {value}")
        for name, value in (
            ("max_retries", max_retries),
            ("backoff_base_s", backoff_base_s),
            ("retry_after_max_s", retry_after_max_s),
        ):
            if value < 0:
                raise ValueError(f"{name} must be >= 0, got {value}")
        if api_key_env is not None and not os.environ.get(api_key_env):
            raise ValueError(
                f"environment variable {api_key_env!r} (api_key_env) is not set or empty; "
                "export the API key there, or pass api_key_env=None for a server without auth"
            )
        self.model = model
        self.base_url = base_url
        self.api_key_env = api_key_env
        self.timeout_s = float(timeout_s)
        self.max_retries = int(max_retries)
        self.backoff_base_s = float(backoff_base_s)
        self.backoff_max_s = float(backoff_max_s)
        self.retry_after_max_s = float(retry_after_max_s)
        self.max_concurrency = int(max_concurrency)
        self.defaults = SamplingParams.from_kwargs(
            {"temperature": temperature, "max_tokens": max_tokens, "top_p": top_p}
        )
        self.seed = seed
        if http_transport not in ("auto", "httpx", "aiohttp"):
            raise ValueError(
                f"http_transport must be 'auto', 'httpx' or 'aiohttp', got {http_transport!r}"
            )
        has_aiohttp = importlib.util.find_spec("aiohttp") is not None
        if http_transport == "aiohttp" and not has_aiohttp:
            raise ValueError(
                "http_transport='aiohttp' needs aiohttp: pip install 'openai[aiohttp]'"
            )
        self.http_transport = http_transport
        self._use_aiohttp = http_transport == "aiohttp" or (
            http_transport == "auto" and has_aiohttp
        )
        self._init_runtime()

    def _init_runtime(self) -> None:
        self._lock = threading.Lock()
        self._states: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _LoopState] = (
            weakref.WeakKeyDictionary()
        )
        self._stats = BackendStats()
        self._rng = random.Random(self.seed)

    # -- plumbing that keeps secrets and loops out of copies --------------------------------

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        for name in ("_lock", "_states", "_stats", "_rng"):
            state.pop(name, None)
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._init_runtime()

    def __repr__(self) -> str:
        return (
            f"OpenAIBackend(model={self.model!r}, base_url={self.base_url!r}, "
            f"api_key_env={self.api_key_env!r}, timeout_s={self.timeout_s}, "
            f"max_retries={self.max_retries}, max_concurrency={self.max_concurrency}, "
            f"http_transport={self.http_transport!r})"
        )

    @property
    def stats(self) -> BackendStats:
        """A snapshot of the counters (calls, requests, retries, failures, tokens)."""
        return self._stats

    def _count(self, **deltas: int) -> None:
        with self._lock:
            self._stats = self._stats.plus(**deltas)

    def _api_key(self) -> str:
        if self.api_key_env is None:
            return "no-key"  # the client insists on a key; servers without auth ignore it
        key = os.environ.get(self.api_key_env)
        if not key:
            raise LookupError(f"environment variable {self.api_key_env!r} is not set or empty")
        return key

    async def _state(self) -> _LoopState:
        """The client and semaphore of the running loop, created on first use in it."""
        loop = asyncio.get_running_loop()
        with self._lock:
            state = self._states.get(loop)
        if state is not None:
            return state
        import openai

        api_key = self._api_key()
        extra: dict[str, Any] = {}
        if self._use_aiohttp:
            extra["http_client"] = openai.DefaultAioHttpClient(timeout=self.timeout_s)
        state = _LoopState(
            client=openai.AsyncOpenAI(
                api_key=api_key,
                base_url=self.base_url,
                timeout=self.timeout_s,
                max_retries=0,  # our loop below retries; two layers would multiply attempts
                **extra,
            ),
            semaphore=asyncio.Semaphore(self.max_concurrency),
        )
        state.closer = _close_at_loop_shutdown(state.client)
        await state.closer.__anext__()
        with self._lock:
            self._states[loop] = state
        return state

    async def aclose(self) -> None:
        """Close the HTTP client of the running loop and forget clients of other loops.

        Clients of loops that already ended cannot be closed from here (their sockets died
        with the loop); they are dropped.
        """
        loop = asyncio.get_running_loop()
        with self._lock:
            state = self._states.pop(loop, None)
            self._states = weakref.WeakKeyDictionary()
        if state is not None:
            await state.closer.aclose()

    # -- the call ---------------------------------------------------------------------------

    async def complete(self, messages: Sequence[Message], **sampling: Any) -> Completion:
        """Complete a chat; never raises (except cancellation, which must propagate).

        Args:
            messages: OpenAI-style chat messages.
            **sampling: ``temperature``, ``max_tokens``, ``top_p``, ``stop``, ``seed``.

        Returns:
            The completion, or `Completion.failure` naming why there is none.
        """
        start = time.monotonic()
        self._count(calls=1)
        try:
            chat = validate_messages(messages)
            params = SamplingParams.from_kwargs(sampling).merged_over(self.defaults)
        except ValueError as exc:
            self._count(failures=1)
            return Completion.failure(f"invalid request: {exc}", attempts=0)
        try:
            state = await self._state()
        except Exception as exc:
            self._count(failures=1)
            return Completion.failure(
                f"cannot create client: {self._scrub(str(exc))}",
                latency_s=time.monotonic() - start,
                attempts=0,
            )
        request = self._request_kwargs(chat, params)
        attempt = 0
        while True:
            attempt += 1
            result, retry_after = await self._attempt(state, request)
            if isinstance(result, Completion):
                self._count(
                    prompt_tokens=result.usage.prompt_tokens,
                    completion_tokens=result.usage.completion_tokens,
                    failures=0 if result.ok else 1,
                )
                return Completion(
                    text=result.text,
                    usage=result.usage,
                    finish_reason=result.finish_reason,
                    error=result.error,
                    latency_s=time.monotonic() - start,
                    attempts=attempt,
                )
            if attempt > self.max_retries:
                self._count(failures=1)
                return Completion.failure(
                    f"{result} (gave up after {attempt} attempts)",
                    latency_s=time.monotonic() - start,
                    attempts=attempt,
                )
            self._count(retries=1)
            await asyncio.sleep(self._backoff(attempt, retry_after))

    def _request_kwargs(self, chat: list[Message], params: SamplingParams) -> dict[str, Any]:
        kwargs: dict[str, Any] = {"model": self.model, "messages": chat}
        if params.temperature is not None:
            kwargs["temperature"] = params.temperature
        if params.max_tokens is not None:
            kwargs["max_tokens"] = params.max_tokens
        if params.top_p is not None:
            kwargs["top_p"] = params.top_p
        if params.stop is not None:
            kwargs["stop"] = list(params.stop)
        if params.seed is not None:
            kwargs["seed"] = params.seed
        return kwargs

    async def _attempt(
        self, state: _LoopState, request: dict[str, Any]
    ) -> tuple[Completion | str, float | None]:
        """Send one request.

        Returns:
            ``(Completion, None)`` when the outcome is final (success, or a failure that a
            retry would not fix), else ``(reason, retry_after_s)`` for a retryable failure.
        """
        import openai

        try:
            from httpx2 import Response  # openai >= 3
        except ImportError:  # pragma: no cover - openai 1.x/2.x ship httpx
            from httpx import Response

        async with state.semaphore:
            self._count(requests=1)
            try:
                # The client's timeout covers each phase; this bounds the whole request too,
                # so a server dripping bytes cannot hold a call past timeout_s.
                response = await asyncio.wait_for(
                    state.client.post("/chat/completions", cast_to=Response, body=request),
                    self.timeout_s,
                )
                body = response.content
            except asyncio.TimeoutError:
                return f"timeout: no complete response within {self.timeout_s:g} s", None
            except openai.APIConnectionError as exc:  # APITimeoutError included
                root = _root_cause(exc)
                if isinstance(root, TimeoutError) or "Timeout" in type(root).__name__:
                    return f"timeout: no complete response within {self.timeout_s:g} s", None
                return f"connection error: {type(root).__name__}: {self._scrub(str(root))}", None
            except openai.APIStatusError as exc:
                status = exc.status_code
                reason = f"HTTP {status}: {self._scrub(_status_message(exc))}"
                if status in RETRYABLE_STATUS or status >= 500:
                    return reason, _retry_after_s(exc.response.headers)
                return Completion.failure(reason), None
            except Exception as exc:  # anything else the client raised: report, do not retry
                reason = f"unexpected client error: {type(exc).__name__}: {self._scrub(str(exc))}"
                return Completion.failure(reason[:500]), None
        return _parse(body), None

    def _backoff(self, attempt: int, retry_after_s: float | None) -> float:
        if retry_after_s is not None:
            return min(max(retry_after_s, 0.0), self.retry_after_max_s)
        ceiling = min(self.backoff_max_s, self.backoff_base_s * 2 ** (attempt - 1))
        with self._lock:
            return self._rng.uniform(0.0, ceiling)

    def _scrub(self, text: str) -> str:
        """Remove the API key from text that may echo it (error bodies, reprs)."""
        if self.api_key_env is not None:
            key = os.environ.get(self.api_key_env)
            if key:
                text = text.replace(key, "***")
        return text


def _parse(body: bytes) -> Completion:
    """Turn a chat-completion body into a `Completion`, or an error value if unusable."""
    try:
        data = json.loads(body)
    except ValueError as exc:
        return Completion.failure(f"malformed response: body is not JSON ({exc}): {body[:80]!r}")
    try:
        usage = data.get("usage") or {}
        tokens = Usage(
            prompt_tokens=int(usage.get("prompt_tokens") or 0),
            completion_tokens=int(usage.get("completion_tokens") or 0),
        )
        choices = data["choices"]
        if not choices:
            return Completion.failure("malformed response: no choices", usage=tokens)
        choice = choices[0]
        text = choice["message"].get("content")
        finish = choice.get("finish_reason")
    except (AttributeError, KeyError, IndexError, TypeError, ValueError) as exc:
        return Completion.failure(
            f"malformed response: missing or bad field ({type(exc).__name__}: {exc})"[:500]
        )
    if not isinstance(text, str) or not text.strip():
        return Completion.failure(f"empty content (finish_reason={finish})", usage=tokens)
    return Completion(text=text, usage=tokens, finish_reason=finish)


def _retry_after_s(headers: Mapping[str, str]) -> float | None:
    """Seconds from ``retry-after-ms`` or ``retry-after`` (seconds or an HTTP date)."""
    value = headers.get("retry-after-ms")
    if value is not None:
        try:
            return float(value) / 1000.0
        except ValueError:
            pass
    value = headers.get("retry-after")
    if value is None:
        return None
    try:
        return float(value)
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


def _status_message(exc: Any) -> str:
    body = getattr(exc, "body", None)
    if isinstance(body, Mapping):
        error = body.get("error", body)
        if isinstance(error, Mapping) and isinstance(error.get("message"), str):
            return error["message"][:300]
    return str(getattr(exc, "message", exc))[:300]


def _root_cause(exc: BaseException) -> BaseException:
    """The innermost cause. The aiohttp transport reports a refused or dropped connection as
    a connect *timeout*, so the root (ConnectionRefusedError, ServerDisconnectedError, ...)
    is what tells a timeout from a connection failure."""
    seen = {id(exc)}
    while (nxt := exc.__cause__ or exc.__context__) is not None and id(nxt) not in seen:
        seen.add(id(nxt))
        exc = nxt
    return exc
