"""`RecordingPolicy`: a scripted Flow-Director for the pseudo-terminal test of
``flowsteer orchestrate`` (a separate process): replies from a list, and writes every context it
received to a JSON lines file the test reads back."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from flowsteer.llm.backend import Completion, Message


class RecordingPolicy:
    """Call k answers ``replies[k]`` (the last repeats) and appends its messages to ``log``."""

    def __init__(self, replies: list[str], log: str) -> None:
        self.replies = replies
        self.log = Path(log)
        self.calls = 0

    async def complete(self, messages: Sequence[Message], **sampling: Any) -> Completion:
        with self.log.open("a") as f:
            f.write(json.dumps([dict(m) for m in messages]) + "\n")
        text = self.replies[min(self.calls, len(self.replies) - 1)]
        self.calls += 1
        return Completion(text)
