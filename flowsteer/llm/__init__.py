"""Backend LLMs that execute the operators: one protocol, several interchangeable classes.

`TransformersBackend` is resolved lazily so ``import flowsteer.llm`` never imports torch or
transformers (the text side of the core stays light; see docs/design.md §7). `SimulatedBackend`
(a simulator, not a model) is resolved lazily too: it reads operator prompts, so it imports the
operators, which import this package's `backend` module.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from flowsteer.llm.backend import (
    SAMPLING_KEYS,
    BackendStats,
    Completion,
    LLMBackend,
    Message,
    SamplingParams,
    Usage,
    validate_messages,
)
from flowsteer.llm.loopback_server import Fault, LoopbackServer, RecordedRequest
from flowsteer.llm.openai_backend import OpenAIBackend
from flowsteer.llm.scripted import ScriptedBackend

if TYPE_CHECKING:
    from flowsteer.llm.simulated import SimulatedBackend
    from flowsteer.llm.transformers_backend import TransformersBackend

__all__ = [
    "SAMPLING_KEYS",
    "BackendStats",
    "Completion",
    "Fault",
    "LLMBackend",
    "LoopbackServer",
    "Message",
    "OpenAIBackend",
    "RecordedRequest",
    "SamplingParams",
    "ScriptedBackend",
    "SimulatedBackend",
    "TransformersBackend",
    "Usage",
    "validate_messages",
]


def __getattr__(name: str) -> Any:
    if name == "TransformersBackend":
        from flowsteer.llm.transformers_backend import TransformersBackend

        return TransformersBackend
    if name == "SimulatedBackend":
        from flowsteer.llm.simulated import SimulatedBackend

        return SimulatedBackend
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
