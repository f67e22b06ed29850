"""`LocalPolicy`: a policy model directory, LoRA adapter or fit checkpoint as a chat backend.

`flowsteer orchestrate` talks to every policy through `LLMBackend.complete`; this wraps the
weights `load_policy_model` loads (the same loading as ``flowsteer eval``) in that interface.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

from flowsteer.llm.backend import Completion, Message, Usage


class LocalPolicy:
    """Greedy (or sampled) generation with Hugging Face ``generate`` in a worker thread.

    Args:
        model: The base model directory.
        adapter: A LoRA adapter directory on it.
        checkpoint: A ``flowsteer fit`` checkpoint.
        lora: The checkpoint's LoRA settings (from its config).
        dtype: Weight dtype.
        max_tokens: Default tokens per turn.
    """

    def __init__(
        self,
        model: str,
        adapter: str | None = None,
        checkpoint: str | None = None,
        lora: dict[str, Any] | None = None,
        dtype: str = "float32",
        max_tokens: int = 256,
    ) -> None:
        from flowsteer.evaluation.policy_eval import load_policy_model

        self.model, self.tokenizer, _ = load_policy_model(
            model, adapter=adapter, checkpoint=checkpoint, lora=lora, dtype=dtype
        )
        self.max_tokens = max_tokens

    def _generate(self, messages: Sequence[Message], sampling: dict[str, Any]) -> Completion:
        import torch

        ids = self.tokenizer.apply_chat_template(
            [dict(m) for m in messages], add_generation_prompt=True, return_tensors="pt",
            return_dict=True,
        )  # fmt: skip
        temperature = float(sampling.get("temperature") or 0.0)
        if sampling.get("seed") is not None:
            torch.manual_seed(int(sampling["seed"]))
        with torch.no_grad():
            out = self.model.generate(
                **ids,
                max_new_tokens=int(sampling.get("max_tokens") or self.max_tokens),
                do_sample=temperature > 0,
                temperature=temperature if temperature > 0 else None,
                top_p=None,
                top_k=None,
                pad_token_id=self.tokenizer.pad_token_id or self.tokenizer.eos_token_id,
            )
        prompt_n = ids["input_ids"].shape[1]
        new = out[0, prompt_n:]
        text = self.tokenizer.decode(new, skip_special_tokens=True)
        return Completion(text, Usage(prompt_n, int(new.shape[0])), "stop")

    async def complete(self, messages: Sequence[Message], **sampling: Any) -> Completion:
        try:
            return await asyncio.to_thread(self._generate, messages, sampling)
        except Exception as err:  # a policy failure is shown, never a crash
            return Completion.failure(f"{type(err).__name__}: {err}")


__all__ = ["LocalPolicy"]
