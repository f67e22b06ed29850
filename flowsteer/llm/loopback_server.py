"""A real OpenAI-compatible HTTP server on 127.0.0.1, for tests and benchmarks.

Backends must be tested through the real `openai` client and a real socket, because the
failures that matter (timeouts, dropped connections, 429s with Retry-After, garbage bodies)
live in the HTTP layer that a mock would skip. This server answers
``POST /v1/chat/completions`` and ``GET /v1/models`` from a script, injects faults per request,
and records what it received.

It is an asyncio server running in its own thread, so a request delayed 50 ms costs a sleeping
coroutine, not a thread: hundreds of concurrent slow requests are served side by side.

Example:
    >>> with LoopbackServer(replies=["4"], latency_s=0.05) as server:  # doctest: +SKIP
    ...     backend = OpenAIBackend(model="loopback", base_url=server.base_url, api_key_env=None)
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import Any, Literal

FaultKind = Literal["latency", "status", "drop", "hang", "malformed", "empty"]


@dataclass(frozen=True)
class Fault:
    """What goes wrong with one request. Build with the class methods.

    Attributes:
        kind: ``latency`` (answer normally after `delay_s`), ``status`` (HTTP error `status`,
            with a ``Retry-After`` header when `retry_after_s` is set), ``drop`` (close the
            socket without a response), ``hang`` (say nothing for `delay_s`, then drop),
            ``malformed`` (200 with a body that is not JSON), ``empty`` (200 with empty
            content).
        delay_s: Extra delay before acting (``latency``, ``hang``; added for the others).
        status: HTTP status for ``status`` faults.
        retry_after_s: Value of the ``Retry-After`` header, seconds.
        message: Error message in the body of a ``status`` fault (default: the reason phrase).
    """

    kind: FaultKind
    delay_s: float = 0.0
    status: int = 500
    retry_after_s: float | None = None
    message: str | None = None

    @classmethod
    def latency(cls, delay_s: float) -> Fault:
        return cls("latency", delay_s=delay_s)

    @classmethod
    def http(
        cls, status: int = 500, retry_after_s: float | None = None, message: str | None = None
    ) -> Fault:
        return cls("status", status=status, retry_after_s=retry_after_s, message=message)

    @classmethod
    def drop(cls) -> Fault:
        return cls("drop")

    @classmethod
    def hang(cls, delay_s: float = 30.0) -> Fault:
        return cls("hang", delay_s=delay_s)

    @classmethod
    def malformed(cls) -> Fault:
        return cls("malformed")

    @classmethod
    def empty(cls) -> Fault:
        return cls("empty")


@dataclass
class RecordedRequest:
    """One request as the server received it.

    Attributes:
        index: 0-based arrival order among chat-completion requests (-1 for other paths).
        method: HTTP method.
        path: Request path.
        headers: Header names lower-cased.
        body: The parsed JSON body, or ``None``.
        received_at: `time.monotonic()` at arrival.
    """

    index: int
    method: str
    path: str
    headers: dict[str, str]
    body: Any
    received_at: float = field(default_factory=time.monotonic)


Replies = Callable[[dict[str, Any]], "str | Fault"] | Sequence["str | Fault"]
Faults = Callable[[int, dict[str, Any]], "Fault | None"] | Sequence["Fault | None"]


def whitespace_tokens(text: str) -> int:
    """The server's token count: whitespace-separated words (cheap, deterministic)."""
    return len(text.split())


class LoopbackServer:
    """OpenAI-compatible chat server on ``127.0.0.1``, started and stopped from Python.

    Args:
        replies: How to answer: a callable ``(request_json) -> text`` (it may also return a
            `Fault`), or a sequence used in order and cycled. Default: ``"echo: <last user
            message>"``.
        faults: Per-request faults: a sequence indexed by arrival order (``None`` or past the
            end: no fault), or a callable ``(index, request_json) -> Fault | None``.
        latency_s: Delay before every chat answer (the benchmark's fixed per-call cost).
        model: Model id reported by ``/v1/models`` and in responses.
        host: Interface to bind; loopback by default so nothing outside can reach it.
        port: Port to bind; ``0`` picks a free one.
    """

    def __init__(
        self,
        replies: Replies | None = None,
        faults: Faults | None = None,
        latency_s: float = 0.0,
        model: str = "loopback",
        host: str = "127.0.0.1",
        port: int = 0,
    ) -> None:
        if isinstance(replies, str):
            raise TypeError("replies must be a callable or a list of strings, not one string")
        if replies is not None and not callable(replies) and len(replies) == 0:
            raise ValueError("replies must not be an empty list")
        self.replies = replies
        self.faults = faults
        self.latency_s = latency_s
        self.model = model
        self.host = host
        self.port = port
        self.requests: list[RecordedRequest] = []
        self.in_flight = 0
        self.max_in_flight = 0
        self._chat_count = 0
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._stop: asyncio.Event | None = None
        self._ready = threading.Event()
        self._startup_error: BaseException | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    # -- lifecycle -------------------------------------------------------------------------

    @property
    def base_url(self) -> str:
        """``http://127.0.0.1:<port>/v1``, what an OpenAI client takes as `base_url`."""
        return f"http://{self.host}:{self.port}/v1"

    @property
    def chat_requests(self) -> list[RecordedRequest]:
        return [r for r in self.requests if r.index >= 0]

    def start(self) -> LoopbackServer:
        if self._thread is not None:
            raise RuntimeError("LoopbackServer already started")
        self._thread = threading.Thread(target=self._run, name="loopback-server", daemon=True)
        self._thread.start()
        self._ready.wait(10)
        if self._startup_error is not None:
            raise RuntimeError(f"LoopbackServer failed to start: {self._startup_error}")
        return self

    def stop(self) -> None:
        if self._thread is None:
            return
        if self._loop is not None and self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(10)
        self._thread = None

    def __enter__(self) -> LoopbackServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def reset(self) -> None:
        """Forget recorded requests and counters (the script position restarts too)."""
        with self._lock:
            self.requests.clear()
            self._chat_count = 0
            self.max_in_flight = self.in_flight

    def _run(self) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop
        try:
            loop.run_until_complete(self._main())
        finally:
            loop.close()

    async def _main(self) -> None:
        self._stop = asyncio.Event()
        try:
            server = await asyncio.start_server(
                self._on_connection, self.host, self.port, backlog=1024
            )
        except OSError as exc:
            self._startup_error = exc
            self._ready.set()
            return
        self.port = server.sockets[0].getsockname()[1]
        self._ready.set()
        async with server:
            await self._stop.wait()
            server.close()
            for task in list(self._tasks):
                task.cancel()
            await asyncio.gather(*self._tasks, return_exceptions=True)

    # -- HTTP ------------------------------------------------------------------------------

    async def _on_connection(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        try:
            while await self._serve_one(reader, writer):
                pass
        except (ConnectionError, asyncio.IncompleteReadError, asyncio.CancelledError):
            pass
        finally:
            self._tasks.discard(task)
            writer.transport.abort()

    async def _serve_one(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> bool:
        """Serve one request; return whether the connection stays open."""
        request_line = await reader.readline()
        if not request_line:
            return False
        try:
            method, path, _version = request_line.decode("latin-1").split()
        except ValueError:
            await self._send(writer, 400, {"error": {"message": "bad request line"}})
            return False
        headers: dict[str, str] = {}
        while True:
            line = await reader.readline()
            if line in (b"\r\n", b"\n", b""):
                break
            name, _, value = line.decode("latin-1").partition(":")
            headers[name.strip().lower()] = value.strip()
        raw = await reader.readexactly(int(headers.get("content-length", "0") or 0))
        keep_alive = headers.get("connection", "").lower() != "close"

        if method == "GET" and path.rstrip("/") == "/v1/models":
            self._record(-1, method, path, headers, None)
            body = {"object": "list", "data": [{"id": self.model, "object": "model"}]}
            await self._send(writer, 200, body)
            return keep_alive
        if method != "POST" or path.rstrip("/") != "/v1/chat/completions":
            self._record(-1, method, path, headers, None)
            await self._send(writer, 404, _error_body(f"no route for {method} {path}"))
            return keep_alive
        try:
            request = json.loads(raw)
            if not isinstance(request, dict):
                raise ValueError("body is not a JSON object")
        except ValueError as exc:
            self._record(-1, method, path, headers, None)
            await self._send(writer, 400, _error_body(f"invalid JSON body: {exc}"))
            return keep_alive

        with self._lock:
            index = self._chat_count
            self._chat_count += 1
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)
        self._record(index, method, path, headers, request)
        try:
            return await self._answer_chat(index, request, writer) and keep_alive
        finally:
            with self._lock:
                self.in_flight -= 1

    async def _answer_chat(
        self, index: int, request: dict[str, Any], writer: asyncio.StreamWriter
    ) -> bool:
        fault = self._fault_for(index, request)
        text: str | Fault
        try:
            answers = fault is None or fault.kind in ("latency", "empty")
            text = self._reply_for(index, request) if answers else ""
        except Exception as exc:  # a broken script is the test's bug: say so over HTTP
            await self._send(writer, 500, _error_body(f"reply script raised {exc!r}"))
            return True
        if isinstance(text, Fault):
            fault, text = text, ""
        delay = self.latency_s + (fault.delay_s if fault is not None else 0.0)
        if delay > 0:
            await asyncio.sleep(delay)
        if fault is not None and fault.kind in ("drop", "hang"):
            writer.transport.abort()
            return False
        if fault is not None and fault.kind == "status":
            extra = {}
            if fault.retry_after_s is not None:
                extra["Retry-After"] = f"{fault.retry_after_s:g}"
            message = fault.message if fault.message is not None else _phrase(fault.status)
            await self._send(writer, fault.status, _error_body(message, fault.status), extra)
            return True
        if fault is not None and fault.kind == "malformed":
            await self._send_raw(writer, 200, b'{"id": "chatcmpl-broken", "choices": [{"mess')
            return True
        if fault is not None and fault.kind == "empty":
            text = ""
        assert isinstance(text, str)
        text, finish = _apply_limits(text, request)
        prompt_tokens = sum(
            whitespace_tokens(m.get("content") or "")
            for m in request.get("messages", [])
            if isinstance(m, dict) and isinstance(m.get("content"), str)
        )
        completion_tokens = whitespace_tokens(text)
        body = {
            "id": f"chatcmpl-loopback-{index}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": request.get("model", self.model),
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": text},
                    "finish_reason": finish,
                }
            ],
            "usage": {
                "prompt_tokens": prompt_tokens,
                "completion_tokens": completion_tokens,
                "total_tokens": prompt_tokens + completion_tokens,
            },
        }
        await self._send(writer, 200, body)
        return True

    def _fault_for(self, index: int, request: dict[str, Any]) -> Fault | None:
        if self.faults is None:
            return None
        if callable(self.faults):
            return self.faults(index, request)
        return self.faults[index] if index < len(self.faults) else None

    def _reply_for(self, index: int, request: dict[str, Any]) -> str | Fault:
        if self.replies is None:
            users = [m for m in request.get("messages", []) if m.get("role") == "user"]
            return f"echo: {users[-1].get('content', '') if users else ''}"
        if callable(self.replies):
            return self.replies(request)
        return self.replies[index % len(self.replies)]

    def _record(
        self, index: int, method: str, path: str, headers: dict[str, str], body: Any
    ) -> None:
        self.requests.append(RecordedRequest(index, method, path, headers, body))

    async def _send(
        self,
        writer: asyncio.StreamWriter,
        status: int,
        body: dict[str, Any],
        extra_headers: dict[str, str] | None = None,
    ) -> None:
        await self._send_raw(writer, status, json.dumps(body).encode(), extra_headers)

    async def _send_raw(
        self,
        writer: asyncio.StreamWriter,
        status: int,
        payload: bytes,
        extra_headers: dict[str, str] | None = None,
    ) -> None:
        lines = [
            f"HTTP/1.1 {status} {_phrase(status)}",
            "Content-Type: application/json",
            f"Content-Length: {len(payload)}",
            *(f"{k}: {v}" for k, v in (extra_headers or {}).items()),
        ]
        writer.write(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + payload)
        with contextlib.suppress(ConnectionError):
            await writer.drain()


def _phrase(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Error"


def _error_body(message: str, status: int = 500) -> dict[str, Any]:
    return {"error": {"message": message, "type": "loopback_error", "code": status}}


def _apply_limits(text: str, request: dict[str, Any]) -> tuple[str, str]:
    """Honour ``stop`` and ``max_tokens`` (in whitespace tokens) like a real server would."""
    stop = request.get("stop")
    stops = [stop] if isinstance(stop, str) else list(stop or [])
    cut = min((i for s in stops if s and (i := text.find(s)) >= 0), default=-1)
    if cut >= 0:
        text = text[:cut]
    max_tokens = request.get("max_tokens") or request.get("max_completion_tokens")
    if isinstance(max_tokens, int) and whitespace_tokens(text) > max_tokens:
        return " ".join(text.split()[:max_tokens]), "length"
    return text, "stop"
