"""The chat template pieces against the templates' own rendering of whole conversations.

The tiny template is prefix-preserving: the incremental ids equal the rendering, token for token.
The real Qwen3 template (tests/data/qwen3_chat_template.jinja, Qwen3-0.6B's tokenizer_config)
is prefix-preserving only while no earlier assistant turn has a think block: rendering a
finished conversation drops the ``<think>…</think>`` of every assistant turn before the last
user turn, and with ``enable_thinking=False`` also the empty think block its own generation
prompt inserted. These tests pin both facts down.
"""

from __future__ import annotations

import pytest

from flowsteer.rollout.chat import ChatFormat

SYSTEM = "You are the Flow-Director."
TASK = "Task (math):\nWhat is 2 + 2?"
TURNS = [
    "<action>add</action><operator>Plan</operator>",
    "<action>set_prompt</action><prompt>List the steps.</prompt>",
    "<action>finish</action>",
]
THINK_TURNS = [
    "<think>\nStart with a plan.\n</think>\n\n<action>add</action><operator>Plan</operator>",
    "<think>\nKeep the default.\n</think>\n\n<action>set_prompt</action><prompt></prompt>",
]
OBSERVATIONS = ["Accepted. Awaiting the prompt of n1.", "Accepted. The workflow ran: 4."]


def incremental(chat: ChatFormat, turns: list[str], observations: list[str]) -> list[int]:
    """The ids an episode builds: prompt, then per turn sampled ids + end-of-turn + observation."""
    ids = chat.prompt_ids(SYSTEM, TASK)
    for k, turn in enumerate(turns):
        ids += [*chat.encode(turn), chat.end_of_turn_id]
        if k < len(observations):
            ids += chat.observation_ids(observations[k])
    return ids


def messages(turns: list[str], observations: list[str]) -> list[dict[str, str]]:
    out = [{"role": "system", "content": SYSTEM}, {"role": "user", "content": TASK}]
    for k, turn in enumerate(turns):
        out.append({"role": "assistant", "content": turn})
        if k < len(observations):
            out.append({"role": "user", "content": observations[k]})
    return out


@pytest.mark.parametrize("turns", [TURNS[:2], THINK_TURNS])
def test_tiny_template_incremental_equals_rendering(tiny_tokenizer, turns):
    chat = ChatFormat(tiny_tokenizer)
    # Ending at a generation prompt (the next turn is due) ...
    ids = incremental(chat, turns, OBSERVATIONS)
    rendered = chat.render(messages(turns, OBSERVATIONS), add_generation_prompt=True)
    assert ids == chat.encode(rendered)
    # ... and ending on the policy's own end-of-turn (the template adds one newline after it).
    ids = incremental(chat, turns, OBSERVATIONS[: len(turns) - 1])
    rendered = chat.render(
        messages(turns, OBSERVATIONS[: len(turns) - 1]), add_generation_prompt=False
    )
    assert ids + chat.encode("\n") == chat.encode(rendered)


def test_pieces_are_the_chatml_frame(qwen3_tokenizer):
    chat = ChatFormat(qwen3_tokenizer)
    tok = qwen3_tokenizer
    assert tok.convert_ids_to_tokens(chat.end_of_turn_id) == "<|im_end|>"
    obs = tok.decode(chat.observation_ids("OBS"))
    assert obs == "\n<|im_start|>user\nOBS<|im_end|>\n<|im_start|>assistant\n"
    # enable_thinking=True renders like the default: the policy decides whether to think.
    on = ChatFormat(tok, enable_thinking=True)
    assert on.observation_ids("OBS") == chat.observation_ids("OBS")
    assert on.prompt_ids(SYSTEM, TASK) == chat.prompt_ids(SYSTEM, TASK)
    off = ChatFormat(tok, enable_thinking=False)
    assert tok.decode(off.observation_ids("OBS")).endswith(
        "<|im_start|>assistant\n<think>\n\n</think>\n\n"
    )
    # Special tokens are single ids in every piece.
    for name in ("<|im_start|>", "<think>", "</think>"):
        assert tok.convert_tokens_to_ids(name) in off.observation_ids("OBS")


def test_qwen3_is_prefix_preserving_without_think_blocks(qwen3_tokenizer):
    chat = ChatFormat(qwen3_tokenizer)
    ids = incremental(chat, TURNS[:2], OBSERVATIONS)
    rendered = chat.render(messages(TURNS[:2], OBSERVATIONS), add_generation_prompt=True)
    assert ids == chat.encode(rendered)


def test_qwen3_drops_earlier_think_blocks(qwen3_tokenizer):
    chat = ChatFormat(qwen3_tokenizer)
    ids = incremental(chat, THINK_TURNS, OBSERVATIONS)
    rendered = chat.encode(
        chat.render(messages(THINK_TURNS, OBSERVATIONS), add_generation_prompt=True)
    )
    assert ids != rendered
    # The difference is exactly the think blocks the policy sampled in its earlier turns.
    without_think = incremental(
        chat, [t.split("</think>\n\n", 1)[1] for t in THINK_TURNS], OBSERVATIONS
    )
    assert without_think == rendered
    # The last assistant turn (after the last user turn) keeps its think block: a one-turn
    # conversation renders exactly what the policy sampled.
    one = incremental(chat, THINK_TURNS[:1], [])
    text = chat.render(messages(THINK_TURNS[:1], []), add_generation_prompt=False)
    assert one + chat.encode("\n") == chat.encode(text)


def test_qwen3_enable_thinking_false_drops_the_empty_think_of_earlier_turns(qwen3_tokenizer):
    chat = ChatFormat(qwen3_tokenizer, enable_thinking=False)
    empty = chat.encode("<think>\n\n</think>\n\n")
    ids = incremental(chat, TURNS[:2], OBSERVATIONS)
    rendered = chat.encode(
        chat.render(messages(TURNS[:2], OBSERVATIONS), add_generation_prompt=True)
    )
    # Every generation prompt in the episode carries the empty think block (3 of them); the
    # rendering keeps it only in the last one.
    n = len(empty)
    count = sum(ids[i : i + n] == empty for i in range(len(ids)))
    assert count == 3
    assert sum(rendered[i : i + n] == empty for i in range(len(rendered))) == 1
    stripped, i = [], 0
    last = max(i for i in range(len(ids)) if ids[i : i + n] == empty)
    while i < len(ids):
        if ids[i : i + n] == empty and i != last:
            i += n
            continue
        stripped.append(ids[i])
        i += 1
    assert stripped == rendered


def test_template_without_chat_template_is_refused(tiny_tokenizer):
    import copy

    tok = copy.deepcopy(tiny_tokenizer)
    tok.chat_template = None
    with pytest.raises(ValueError, match="chat_template"):
        ChatFormat(tok)


def test_unknown_end_of_turn_is_refused(tiny_tokenizer):
    with pytest.raises(ValueError, match="end-of-turn"):
        ChatFormat(tiny_tokenizer, end_of_turn="<|eot_id|>")


def test_decode_turn_keeps_think_tokens_and_drops_end_of_turn(tiny_tokenizer):
    chat = ChatFormat(tiny_tokenizer)
    ids = [*chat.encode(THINK_TURNS[0]), chat.end_of_turn_id]
    assert chat.decode_turn(ids) == THINK_TURNS[0]
