"""The seam between operators and whatever model executes them.

Operators talk to a backend LLM through one coroutine, `LLMBackend.complete`, so the canvas
never knows whether a hosted API, a vLLM server, a local transformers model or a test script
answers. Failures are *values*: a `Completion` whose `error` is set. An episode must survive a
flaky server, and the executor turns the error into feedback for the policy, so no backend
lets an exception escape `complete`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any, Literal, Protocol, TypedDict, runtime_checkable

Role = Literal["system", "user", "assistant", "tool"]
ROLES: tuple[str, ...] = ("system", "user", "assistant", "tool")


class Message(TypedDict):
    """One OpenAI-style chat message: ``{"role": "user", "content": "..."}``."""

    role: Role
    content: str


@dataclass(frozen=True)
class Usage:
    """Token counts of one completion, as reported by the backend.

    Attributes:
        prompt_tokens: Tokens in the rendered prompt.
        completion_tokens: Tokens generated.
    """

    prompt_tokens: int = 0
    completion_tokens: int = 0

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens


@dataclass(frozen=True)
class Completion:
    """The answer to one `complete` call, or the reason there is none.

    Attributes:
        text: The generated text; ``""`` when `error` is set.
        usage: Token counts (zero when the backend never answered).
        finish_reason: ``"stop"``, ``"length"``, ... as reported; ``None`` on error.
        error: A one-line, human-readable reason the call failed (never contains secrets),
            or ``None`` on success.
        latency_s: Wall time of the whole call, retries and backoff included.
        attempts: How many requests were sent (1 when the first one answered).
    """

    text: str
    usage: Usage = Usage()
    finish_reason: str | None = None
    error: str | None = None
    latency_s: float = 0.0
    attempts: int = 1

    @property
    def ok(self) -> bool:
        """True when the call produced text the operator may parse."""
        return self.error is None

    @classmethod
    def failure(
        cls, error: str, *, latency_s: float = 0.0, attempts: int = 1, usage: Usage = Usage()
    ) -> Completion:
        """A failed completion: empty text, no finish reason, `error` set."""
        return cls(
            text="",
            usage=usage,
            finish_reason=None,
            error=error,
            latency_s=latency_s,
            attempts=attempts,
        )

    def with_latency(self, latency_s: float) -> Completion:
        return replace(self, latency_s=latency_s)


@dataclass(frozen=True)
class SamplingParams:
    """The sampling knobs an operator may set per call; anything else is rejected.

    A field left ``None`` falls back to the backend's default, so operators only override
    what they mean to.

    Attributes:
        temperature: Softmax temperature, ``>= 0``; ``0`` means greedy.
        max_tokens: Most tokens to generate, ``>= 1``.
        top_p: Nucleus mass in ``(0, 1]``.
        stop: Strings that end generation (not included in the text).
        seed: Sampling seed, where the backend supports one.
    """

    temperature: float | None = None
    max_tokens: int | None = None
    top_p: float | None = None
    stop: tuple[str, ...] | None = None
    seed: int | None = None

    @classmethod
    def from_kwargs(cls, sampling: Mapping[str, Any]) -> SamplingParams:
        """Validate ``**sampling`` of a `complete` call.

        Raises:
            ValueError: On an unknown key or a value of the wrong type or range; the message
                names the key and the allowed ones.
        """
        unknown = sorted(set(sampling) - set(SAMPLING_KEYS))
        if unknown:
            raise ValueError(
                f"unknown sampling parameter(s) {unknown}; allowed: {list(SAMPLING_KEYS)}"
            )
        temperature = sampling.get("temperature")
        if temperature is not None:
            if isinstance(temperature, bool) or not isinstance(temperature, int | float):
                raise ValueError(f"temperature must be a number, got {temperature!r}")
            if temperature < 0:
                raise ValueError(f"temperature must be >= 0, got {temperature}")
            temperature = float(temperature)
        max_tokens = sampling.get("max_tokens")
        if max_tokens is not None and (
            isinstance(max_tokens, bool) or not isinstance(max_tokens, int) or max_tokens < 1
        ):
            raise ValueError(f"max_tokens must be an int >= 1, got {max_tokens!r}")
        top_p = sampling.get("top_p")
        if top_p is not None:
            if isinstance(top_p, bool) or not isinstance(top_p, int | float):
                raise ValueError(f"top_p must be a number, got {top_p!r}")
            if not 0 < top_p <= 1:
                raise ValueError(f"top_p must be in (0, 1], got {top_p}")
            top_p = float(top_p)
        stop = sampling.get("stop")
        if stop is not None:
            if isinstance(stop, str):
                stop = (stop,)
            elif isinstance(stop, Sequence) and all(isinstance(s, str) for s in stop):
                stop = tuple(stop)
            else:
                raise ValueError(f"stop must be a string or a list of strings, got {stop!r}")
            if any(s == "" for s in stop):
                raise ValueError("stop strings must be non-empty")
        seed = sampling.get("seed")
        if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
            raise ValueError(f"seed must be an int, got {seed!r}")
        return cls(
            temperature=temperature, max_tokens=max_tokens, top_p=top_p, stop=stop, seed=seed
        )

    def merged_over(self, defaults: SamplingParams) -> SamplingParams:
        """These params with every ``None`` filled from `defaults`."""
        return SamplingParams(
            **{
                name: getattr(self, name)
                if getattr(self, name) is not None
                else getattr(defaults, name)
                for name in SAMPLING_KEYS
            }
        )


SAMPLING_KEYS: tuple[str, ...] = ("temperature", "max_tokens", "top_p", "stop", "seed")


def validate_messages(messages: object) -> list[Message]:
    """Check that `messages` is a non-empty chat and return it as a list.

    Raises:
        ValueError: Naming the first offending message and what is wrong with it.
    """
    if isinstance(messages, str | bytes) or not isinstance(messages, Sequence):
        raise ValueError(
            "messages must be a list of {'role': ..., 'content': ...} dicts, "
            f"got {type(messages).__name__}"
        )
    if not messages:
        raise ValueError("messages must not be empty")
    out: list[Message] = []
    for i, m in enumerate(messages):
        if not isinstance(m, Mapping):
            raise ValueError(f"messages[{i}] must be a dict, got {type(m).__name__}")
        role, content = m.get("role"), m.get("content")
        if role not in ROLES:
            raise ValueError(f"messages[{i}]['role'] must be one of {ROLES}, got {role!r}")
        if not isinstance(content, str):
            raise ValueError(
                f"messages[{i}]['content'] must be a string, got {type(content).__name__}"
            )
        out.append(Message(role=role, content=content))
    return out


@dataclass(frozen=True)
class BackendStats:
    """Counters of one backend since construction, for logging and budgets.

    Attributes:
        calls: `complete` calls.
        requests: Requests actually sent to the model (calls plus retries; a batch of
            generations counts one per prompt).
        retries: Requests re-sent after a retryable failure.
        failures: Calls that ended as an error value.
        prompt_tokens: Prompt tokens reported over all answered requests.
        completion_tokens: Completion tokens reported over all answered requests.
    """

    calls: int = 0
    requests: int = 0
    retries: int = 0
    failures: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0

    def plus(self, **deltas: int) -> BackendStats:
        """A copy with each named counter increased by its delta."""
        return replace(self, **{k: getattr(self, k) + v for k, v in deltas.items()})


@runtime_checkable
class LLMBackend(Protocol):
    """Anything that completes a chat. Implementations never raise from `complete`.

    Sampling keyword arguments are those of `SamplingParams` (temperature, max_tokens, top_p,
    stop, seed); an unknown key or bad value yields a failed `Completion`, not an exception.
    """

    async def complete(self, messages: Sequence[Message], **sampling: Any) -> Completion:
        """Complete `messages`; on any failure return `Completion.failure(...)`."""
        ...
