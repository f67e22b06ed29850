"""`ChatFormat`: the chat template cut into the token-id pieces a multi-turn episode is built from.

An episode is kept as token ids, never as re-rendered text::

    prompt_ids(system, task)      system turn + first user turn + generation prompt
    <sampled ids>                 the policy's turn, ending with the end-of-turn id it sampled
    observation_ids(feedback)     what the template puts after an assistant turn: the turn
                                  separator, the user turn and the next generation prompt

The pieces are read off the tokenizer's own chat template by rendering it around sentinel
strings, so any ChatML-like template works without a hand-written copy. Each piece begins right
after a special token (``<|im_end|>``) and ends with the generation prompt, so tokenising a piece
on its own gives the same ids as tokenising the whole rendered conversation.

Where a template is prefix-preserving (the tiny model's), the incremental sequence equals the
template's rendering of the whole conversation token for token. The real Qwen3 template is not:
when it renders a finished conversation it drops the ``<think>…</think>`` block of every assistant
turn before the last user turn, and with ``enable_thinking=False`` it also drops the empty think
block its own generation prompt inserted. The episode keeps what the policy actually saw and
sampled, which is what the trainer must score (tests/rollout/test_chat.py shows both).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

_ASSISTANT = "\x1fFLOWSTEER_ASSISTANT\x1f"
_OBSERVATION = "\x1fFLOWSTEER_OBSERVATION\x1f"


class ChatFormat:
    """Token-id pieces of a tokenizer's chat template.

    Args:
        tokenizer: A transformers tokenizer with a ``chat_template``.
        end_of_turn: The token that ends an assistant turn; ``None``: ``<|im_end|>`` when the
            vocabulary has it, else the tokenizer's ``eos_token``.
        enable_thinking: Passed to the template (Qwen3: ``False`` puts an empty think block in
            the generation prompt); ``None``: not passed, the template's default.
    """

    def __init__(
        self, tokenizer: Any, *, end_of_turn: str | None = None, enable_thinking: bool | None = None
    ) -> None:
        if not getattr(tokenizer, "chat_template", None):
            raise ValueError("the tokenizer has no chat_template; ChatFormat needs one")
        self.tokenizer = tokenizer
        self.enable_thinking = enable_thinking
        if end_of_turn is None:
            vocab = tokenizer.get_vocab()
            end_of_turn = "<|im_end|>" if "<|im_end|>" in vocab else tokenizer.eos_token
        ids = tokenizer.convert_tokens_to_ids([end_of_turn])
        if end_of_turn is None or ids[0] is None or ids[0] == tokenizer.unk_token_id:
            raise ValueError(f"end-of-turn token {end_of_turn!r} is not in the vocabulary")
        self.end_of_turn = end_of_turn
        self.end_of_turn_id: int = ids[0]
        self._obs_prefix, self._obs_suffix = self._observation_frame()

    # ------------------------------------------------------------------ rendering
    def render(self, messages: Sequence[dict[str, str]], *, add_generation_prompt: bool) -> str:
        """The template's text for ``messages`` (with this format's ``enable_thinking``)."""
        extra = {} if self.enable_thinking is None else {"enable_thinking": self.enable_thinking}
        return self.tokenizer.apply_chat_template(
            list(messages), tokenize=False, add_generation_prompt=add_generation_prompt, **extra
        )

    def encode(self, text: str) -> list[int]:
        """Token ids of rendered template text (special tokens parsed, none added)."""
        return self.tokenizer.encode(text, add_special_tokens=False)

    def _observation_frame(self) -> tuple[str, str]:
        """The text between an assistant turn's end-of-turn token and an observation, and after
        it (through the next generation prompt)."""
        messages = [
            {"role": "system", "content": "s"},
            {"role": "user", "content": "u"},
            {"role": "assistant", "content": _ASSISTANT},
            {"role": "user", "content": _OBSERVATION},
        ]
        text = self.render(messages, add_generation_prompt=True)
        if text.count(_ASSISTANT) != 1 or text.count(_OBSERVATION) != 1:
            raise ValueError("the chat template does not render message contents verbatim")
        after = text.split(_ASSISTANT, 1)[1]
        if not after.startswith(self.end_of_turn):
            raise ValueError(
                f"the chat template does not end an assistant turn with {self.end_of_turn!r} "
                f"(it renders {after[:40]!r}); pass end_of_turn"
            )
        prefix, suffix = after[len(self.end_of_turn) :].split(_OBSERVATION, 1)
        return prefix, suffix

    # --------------------------------------------------------------------- pieces
    def prompt_ids(self, system: str, user: str) -> list[int]:
        """The first prompt: system turn, the task as user turn, the generation prompt."""
        messages = [{"role": "system", "content": system}, {"role": "user", "content": user}]
        return self.encode(self.render(messages, add_generation_prompt=True))

    def observation_ids(self, observation: str) -> list[int]:
        """What follows an assistant turn's end-of-turn id: the user turn carrying
        ``observation`` and the next generation prompt."""
        return self.encode(self._obs_prefix + observation + self._obs_suffix)

    def strip_end_of_turn(self, token_ids: Sequence[int]) -> list[int]:
        """A turn's ids without its final end-of-turn id (the message text the canvas reads)."""
        ids = list(token_ids)
        if ids and ids[-1] == self.end_of_turn_id:
            ids.pop()
        return ids

    def decode_turn(self, token_ids: Sequence[int]) -> str:
        """The text of one policy turn as the canvas reads it (end-of-turn token removed;
        other special tokens such as ``<think>`` kept, since they are part of the message)."""
        return self.tokenizer.decode(self.strip_end_of_turn(token_ids), skip_special_tokens=False)


__all__ = ["ChatFormat"]
