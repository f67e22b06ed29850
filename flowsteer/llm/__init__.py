"""Backend LLMs that execute the operators: one protocol, several interchangeable classes.

`TransformersBackend` is resolved lazily so ``import flowsteer.llm`` never imports torch or
transformers (the text side of the core stays light; see docs/design.md §7).
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
    "TransformersBackend",
    "Usage",
    "validate_messages",
]


def __getattr__(name: str) -> Any:
    if name == "TransformersBackend":
        from flowsteer.llm.transformers_backend import TransformersBackend

        return TransformersBackend
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
