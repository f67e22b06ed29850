"""`ScriptedEngine`: an `Engine` that plays a fixed list of actions, for tests that need episodes
with real workflow executions (an untrained tiny policy rarely writes a valid action)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

from flowsteer.rl.policy import Policy
from flowsteer.rollout.engine import Generation, GenerationRequest


class ScriptedEngine:
    """Turn t of every episode samples ``actions[t]`` (tokenized by the policy's tokenizer).

    Args:
        model: The policy directory (for its tokenizer).
        actions_file: JSON lines with a ``text`` field, one per turn.
    """

    def __init__(self, model: str, actions_file: str) -> None:
        from transformers import AutoTokenizer

        self.tokenizer = AutoTokenizer.from_pretrained(model)
        lines = Path(actions_file).read_text().splitlines()
        self.actions = [json.loads(line)["text"] for line in lines if line.strip()]
        self.end = self.tokenizer.convert_tokens_to_ids("<|im_end|>")
        self.assistant = self.tokenizer.encode("<|im_start|>assistant")
        self._version = 0

    @property
    def weights_version(self) -> int:
        return self._version

    def _turn(self, prompt: Sequence[int]) -> int:
        n, k = len(self.assistant), 0
        for i in range(len(prompt) - n + 1):
            if list(prompt[i : i + n]) == self.assistant:
                k += 1
        return k - 1

    async def generate(self, requests: Sequence[GenerationRequest]) -> list[Generation]:
        out = []
        for request in requests:
            text = self.actions[min(self._turn(request.prompt_ids), len(self.actions) - 1)]
            ids = [*self.tokenizer.encode(text)[: request.sampling.max_tokens - 1], self.end]
            out.append(Generation(ids, [-1.0] * len(ids), "stop"))
        return out

    async def sync_weights(self, policy: Policy, version: int) -> None:
        self._version = version
