"""A backend that answers from a script, for executor and operator tests.

Operator parsing, executor control flow and canvas feedback should be tested without a model
or a socket: this backend returns scripted replies through the exact `LLMBackend.complete`
signature, can inject latency and error values per call, and records what it was asked, how
often, and how many calls overlapped (so a test can prove that parallel branches really ran
concurrently).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Literal

from flowsteer.llm.backend import (
    BackendStats,
    Completion,
    Message,
    SamplingParams,
    Usage,
    validate_messages,
)

ScriptReply = str | Completion
Script = Sequence[ScriptReply] | Callable[[Sequence[Message]], ScriptReply]


class ScriptedBackend:
    """Replies from a list or a function; latency and failures injected per call.

    Args:
        script: A sequence of replies used in call order, or a callable
            ``(messages) -> reply``. A reply is a string, or a full `Completion` (e.g.
            ``Completion.failure("boom")`` to inject an error value). A callable that raises
            yields an error value naming the exception.
        latency_s: Seconds each call sleeps before answering: one number for every call, or a
            sequence indexed by call number (the last entry repeats).
        errors: Call index (0-based) -> error message: those calls return an error value
            instead of consulting the script.
        when_exhausted: What a sequence script does past its end: ``"error"`` (an error value
            saying so), ``"cycle"`` (start over) or ``"repeat_last"``.
    """

    def __init__(
        self,
        script: Script = (),
        latency_s: float | Sequence[float] = 0.0,
        errors: Mapping[int, str] | None = None,
        when_exhausted: Literal["error", "cycle", "repeat_last"] = "error",
    ) -> None:
        if isinstance(script, str):
            raise TypeError("script must be a list of replies or a callable, not one string")
        if when_exhausted not in ("error", "cycle", "repeat_last"):
            raise ValueError(
                f"when_exhausted must be 'error', 'cycle' or 'repeat_last', got {when_exhausted!r}"
            )
        if not callable(script) and when_exhausted != "error" and len(script) == 0:
            raise ValueError(f"when_exhausted={when_exhausted!r} needs a non-empty script")
        latencies = [latency_s] if isinstance(latency_s, int | float) else list(latency_s)
        if not latencies or any(x < 0 for x in latencies):
            raise ValueError(
                f"latency_s must be >= 0 (or a non-empty list of such), got {latency_s}"
            )
        self.script = script
        self.latency_s = latency_s
        self.errors = dict(errors or {})
        self.when_exhausted = when_exhausted
        self._latencies = latencies
        self.seen: list[list[Message]] = []
        """Messages of every call, in call order."""
        self.sampling_seen: list[dict[str, Any]] = []
        """The ``**sampling`` of every call, in call order."""
        self.in_flight = 0
        self.max_in_flight = 0
        self._stats = BackendStats()

    @property
    def calls(self) -> int:
        """How many times `complete` was called."""
        return self._stats.calls

    @property
    def stats(self) -> BackendStats:
        return self._stats

    def __repr__(self) -> str:
        kind = "callable" if callable(self.script) else f"{len(self.script)} replies"
        return f"ScriptedBackend(script=<{kind}>, calls={self.calls})"

    async def complete(self, messages: Sequence[Message], **sampling: Any) -> Completion:
        """Answer the next scripted reply; same contract as every `LLMBackend`."""
        start = time.monotonic()
        index = self._stats.calls
        self._stats = self._stats.plus(calls=1)
        self.seen.append(list(messages) if isinstance(messages, Sequence) else [])
        self.sampling_seen.append(dict(sampling))
        try:
            chat = validate_messages(messages)
            SamplingParams.from_kwargs(sampling)
        except ValueError as exc:
            return self._fail(f"invalid request: {exc}", start, attempts=0)
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            delay = self._latencies[min(index, len(self._latencies) - 1)]
            if delay:
                await asyncio.sleep(delay)
            else:
                await asyncio.sleep(0)  # still yield, as a real backend would
        finally:
            self.in_flight -= 1
        if index in self.errors:
            return self._fail(self.errors[index], start)
        try:
            reply = self._reply(index, chat)
        except Exception as exc:
            return self._fail(f"script raised {type(exc).__name__}: {exc}", start)
        if isinstance(reply, Completion):
            if not reply.ok:
                self._stats = self._stats.plus(failures=1, requests=1)
                return reply.with_latency(time.monotonic() - start)
            completion = reply.with_latency(time.monotonic() - start)
        elif isinstance(reply, str):
            usage = Usage(
                prompt_tokens=sum(len(m["content"].split()) for m in chat),
                completion_tokens=len(reply.split()),
            )
            completion = Completion(
                text=reply, usage=usage, finish_reason="stop", latency_s=time.monotonic() - start
            )
        else:
            return self._fail(
                f"script reply must be a str or Completion, got {type(reply).__name__}", start
            )
        self._stats = self._stats.plus(
            requests=1,
            prompt_tokens=completion.usage.prompt_tokens,
            completion_tokens=completion.usage.completion_tokens,
        )
        return completion

    def _reply(self, index: int, chat: list[Message]) -> ScriptReply:
        if callable(self.script):
            return self.script(chat)
        n = len(self.script)
        if index < n:
            return self.script[index]
        if self.when_exhausted == "cycle":
            return self.script[index % n]
        if self.when_exhausted == "repeat_last":
            return self.script[-1]
        raise LookupError(f"script exhausted: call {index + 1} but only {n} replies scripted")

    def _fail(self, error: str, start: float, attempts: int = 1) -> Completion:
        self._stats = self._stats.plus(failures=1, requests=attempts)
        return Completion.failure(error, latency_s=time.monotonic() - start, attempts=attempts)
