"""The `Engine` seam: whatever samples the policy's turns, token ids in, token ids out.

Rollouts never see text on the way into the training sequence: an engine continues token-id
prompts and returns the sampled ids with their log-probs, exactly as it sampled them. The
log-probs are of the distribution that sampled: ``log_softmax(logits / T)`` at the request's
temperature T (`SamplingParams.logprob_temperature`), the quantity the trainer recomputes.
Engines:
`HFEngine` (its own KV-cached decoding loop on the live policy, CPU), `VLLMEngine` (in-process
``vllm.LLM``) and `VLLMServerEngine` (``vllm serve`` over HTTP). vLLM is imported lazily, in
one module, so importing this file costs nothing.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal, Protocol, runtime_checkable

if TYPE_CHECKING:
    from flowsteer.rl.policy import Policy

FinishReason = Literal["stop", "length", "abort"]


@dataclass(frozen=True)
class SamplingParams:
    """How one continuation is sampled.

    Attributes:
        max_tokens: Most new tokens for this turn.
        temperature: Sampling temperature; 0 means greedy. The returned log-probs are taken at
            this temperature (`logprob_temperature`).
        top_p: Nucleus sampling mass (1.0: off).
        top_k: Top-k sampling (0: off).
        stop_token_ids: Token ids that end the turn; the one sampled is returned (it is part of
            what the policy must learn to emit).
        seed: Per-request seed, so a rollout is reproducible; ``None``: unseeded.
        min_tokens: Fewest new tokens before a stop id may be sampled (vLLM's ``min_tokens``):
            the stop ids are held at probability 0 until then (for fixed-length runs; the
            returned log-probs stay those of the tempered distribution, as with top-k/top-p).
    """

    max_tokens: int = 512
    temperature: float = 1.0
    top_p: float = 1.0
    top_k: int = 0
    stop_token_ids: tuple[int, ...] = ()
    seed: int | None = None
    min_tokens: int = 0

    def __post_init__(self) -> None:
        if not 0 <= self.min_tokens <= self.max_tokens:
            raise ValueError(
                f"SamplingParams: min_tokens must be between 0 and max_tokens "
                f"({self.max_tokens}), got {self.min_tokens}"
            )

    @property
    def logprob_temperature(self) -> float:
        """The temperature of the distribution the returned log-probs are under: ``temperature``,
        or 1 for greedy decoding (0), which samples from no distribution (the raw model's
        log-probs are the natural score; vLLM returns the same for greedy requests)."""
        return self.temperature if self.temperature > 0 else 1.0


@dataclass(frozen=True)
class GenerationRequest:
    """One continuation to sample.

    Attributes:
        prompt_ids: The whole conversation so far, as token ids.
        sampling: How to sample it.
        constraint: A per-request decoding constraint (e.g. a grammar that depends on this
            episode's canvas state); ``None``: unconstrained. The engines here honour an object
            with an ``ebnf`` grammar text (`ActionConstraint`); engines that cannot honour a
            constraint must raise rather than ignore it.
    """

    prompt_ids: Sequence[int]
    sampling: SamplingParams
    constraint: object | None = None


@dataclass(frozen=True)
class Generation:
    """What the engine sampled for one request.

    Attributes:
        token_ids: The sampled ids, in order, including a sampled stop token.
        logprobs: The log-prob of each sampled id under the engine's weights, at the request's
            `SamplingParams.logprob_temperature`, before top-k/top-p truncation (same length as
            ``token_ids``; `VLLMEngine` differs under truncation, see there).
        finish_reason: ``"stop"`` (a stop token was sampled), ``"length"`` (``max_tokens``
            reached) or ``"abort"`` (the engine gave up; ``error`` says why).
        error: Why the request failed, if it did.
        constraint_mass: Under a constraint, the mean over the sampled tokens of the
            probability mass the raw policy put on the allowed tokens; ``None`` when the
            request was unconstrained or the engine cannot measure it (vLLM).
    """

    token_ids: list[int]
    logprobs: list[float]
    finish_reason: FinishReason
    error: str | None = None
    constraint_mass: float | None = None


def grammar_text(constraint: object | None, engine: str, index: int) -> str | None:
    """The EBNF text of a request's constraint (``None``: unconstrained); raises
    `NotImplementedError` for a constraint ``engine`` cannot honour, never ignoring it."""
    if constraint is None:
        return None
    ebnf = getattr(constraint, "ebnf", None)
    if not isinstance(ebnf, str):
        raise NotImplementedError(
            f"{engine} cannot honour the decoding constraint of request {index} "
            f"({type(constraint).__name__}); it honours grammar constraints with an `ebnf` text"
        )
    return ebnf


@runtime_checkable
class Engine(Protocol):
    """Samples continuations of token-id prompts with the current policy weights."""

    @property
    def weights_version(self) -> int:
        """The version of the policy weights this engine serves (0 before any sync)."""
        ...

    async def generate(self, requests: Sequence[GenerationRequest]) -> list[Generation]:
        """Sample every request (one batched call); results in request order."""
        ...

    async def sync_weights(self, policy: Policy, version: int) -> None:
        """Serve ``policy``'s current weights from now on, as ``version``."""
        ...


__all__ = [
    "Engine",
    "FinishReason",
    "Generation",
    "GenerationRequest",
    "SamplingParams",
    "grammar_text",
]
