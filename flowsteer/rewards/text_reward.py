"""String rewards for single-turn tasks (`callbacks.single_turn.SingleTurnSource`).

A text reward is any callable ``(prompt, completion, record) -> float``: ``record`` is the
prompt's JSON record (so a reward can read a reference answer from it). These two are the
usual first tests of a GRPO setup: the reward is cheap, deterministic and learnable.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


def contains_target(prompt: str, completion: str, record: Mapping[str, Any]) -> float:
    """1.0 when the completion contains the record's ``target`` string, else 0.0."""
    target = record.get("target")
    if not isinstance(target, str) or not target:
        raise ValueError(f"contains_target: the record has no non-empty 'target' string: {record}")
    return 1.0 if target in completion else 0.0


def target_fraction(prompt: str, completion: str, record: Mapping[str, Any]) -> float:
    """The fraction of the completion's characters that are the record's ``target`` character
    (a dense reward: every sample scores differently, so groups rarely have zero variance)."""
    target = record.get("target")
    if not isinstance(target, str) or len(target) != 1:
        raise ValueError(f"target_fraction: 'target' must be one character: {record}")
    return completion.count(target) / len(completion) if completion else 0.0


__all__ = ["contains_target", "target_fraction"]
