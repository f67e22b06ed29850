"""Tiny offline policies: a few-layer Qwen3 causal LM with a real byte-level BPE tokenizer.

Nothing here downloads anything. The tokenizer is trained at build time on a fixed corpus, so two
builds with the same arguments give byte-identical tokenizer files and, for a given seed, identical
weights. The result is saved with ``save_pretrained`` and is loaded exactly like a hub model, which
is what lets tests and the CPU quickstart exercise the real loading and generation code paths.
"""

from __future__ import annotations

import json
from pathlib import Path

# Special tokens, in id order. The chat markers follow Qwen3 so real Qwen3 checkpoints and the tiny
# model share one chat format; <think>/</think> are single tokens so a mask can find them cheaply.
SPECIAL_TOKENS: tuple[str, ...] = (
    "<|endoftext|>",
    "<|im_start|>",
    "<|im_end|>",
    "<think>",
    "</think>",
)

# Qwen3-style template: system/user/assistant turns, optional <think> blocks, an
# `enable_thinking=False` switch, and {% generation %} markers so
# `apply_chat_template(..., return_assistant_tokens_mask=True)` can mark the assistant's own tokens.
CHAT_TEMPLATE = (
    "{%- for message in messages -%}"
    "{%- if message['role'] == 'assistant' -%}"
    "{{- '<|im_start|>assistant\\n' -}}"
    "{%- generation -%}"
    "{%- if message.get('reasoning_content') -%}"
    "{{- '<think>\\n' + message['reasoning_content'] + '\\n</think>\\n\\n' -}}"
    "{%- endif -%}"
    "{{- message['content'] + '<|im_end|>' -}}"
    "{%- endgeneration -%}"
    "{{- '\\n' -}}"
    "{%- else -%}"
    "{{- '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>\\n' -}}"
    "{%- endif -%}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}"
    "{{- '<|im_start|>assistant\\n' -}}"
    "{%- if enable_thinking is defined and not enable_thinking -%}"
    "{{- '<think>\\n\\n</think>\\n\\n' -}}"
    "{%- endif -%}"
    "{%- endif -%}"
)

_OPERATORS = (
    "Plan Decompose Programmer Custom AnswerGenerate Test Review Verify Revise ScEnsemble "
    "Aggregate Format parallel conditional loop done finish add delete modify set_prompt"
)
_TAGS = "action operator operators structure condition on_fail on_pass count position target prompt"
_ENGLISH = (
    "the of and to in is that for it as with was on be by this are or from at which an have not "
    "they you we can will would all there their one has more when if so what about how many each "
    "question answer problem solution step first then next final total number result code function "
    "return def import print value list string integer sum product difference times minus plus "
    "equals because therefore check verify review revise plan decompose format test pass fail error "
    "workflow operator canvas feedback status message turn node prompt execute output input true "
    "false none while range len int str float dict self class python math solve write think "
    "Janet sells eggs day dollars how much does she make every market ducks lay breakfast bakes "
    "muffins friends remainder price cost hours minutes week year people apples books money"
)


def _corpus() -> list[str]:
    """A fixed, deterministic training corpus covering the policy's vocabulary."""
    tags = _TAGS.split()
    lines = [
        _ENGLISH,
        _OPERATORS,
        " ".join(f"<{t}>" for t in tags),
        " ".join(f"</{t}>" for t in tags),
    ]
    for op in _OPERATORS.split():
        lines.append(f"<action>add</action><operator>{op}</operator>")
        lines.append(f"<think>I should add {op} next.</think>")
    lines += [
        f"{i} + {j} = {i + j}; {i} * {j} = {i * j}." for i in range(0, 40, 3) for j in range(7)
    ]
    lines += [
        "def solve():\n    return 42\n",
        "assert candidate(1, 2) == 3\n",
        "#### 18",
        "\\boxed{1/2}",
    ]
    return lines * 4


def build_tokenizer(vocab_size: int = 1024):
    """Train a byte-level BPE tokenizer deterministically and wrap it for transformers.

    Args:
        vocab_size: Target vocabulary size, special tokens included (at least 300 so every byte
            and the special tokens fit).

    Returns:
        A ``transformers`` fast tokenizer with the Qwen3-style chat template.
    """
    if vocab_size < 256 + len(SPECIAL_TOKENS) + 8:
        raise ValueError(
            f"vocab_size must be at least {256 + len(SPECIAL_TOKENS) + 8}, got {vocab_size}"
        )
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=list(SPECIAL_TOKENS),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(_corpus(), trainer=trainer)
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        chat_template=CHAT_TEMPLATE,
        model_max_length=1 << 20,
        padding_side="left",
    )


def build_tiny_model(
    out_dir: str | Path,
    *,
    hidden_size: int = 64,
    num_layers: int = 2,
    num_heads: int = 4,
    num_kv_heads: int = 2,
    intermediate_size: int = 128,
    vocab_size: int = 1024,
    max_position_embeddings: int = 16384,
    seed: int = 0,
    overwrite: bool = False,
) -> Path:
    """Build a tiny Qwen3 causal LM plus tokenizer and save both to ``out_dir``.

    Args:
        out_dir: Directory to write (``config.json``, weights, tokenizer files, chat template).
        hidden_size: Model width; must be divisible by ``num_heads``.
        num_layers: Decoder layers.
        num_heads: Attention heads.
        num_kv_heads: Key/value heads (grouped-query attention, as in Qwen3); divides ``num_heads``.
        intermediate_size: MLP width.
        vocab_size: Tokenizer vocabulary size (the model's embedding matches the tokenizer).
        max_position_embeddings: Longest context; RoPE has no parameters, so this costs nothing.
        seed: Seed for the weight initialisation.
        overwrite: Rebuild even if ``out_dir`` already holds a model.

    Returns:
        ``out_dir`` as a Path, loadable with ``AutoModelForCausalLM.from_pretrained`` and
        ``AutoTokenizer.from_pretrained``.
    """
    out = Path(out_dir)
    if (out / "config.json").is_file() and not overwrite:
        return out
    if hidden_size % num_heads or num_heads % num_kv_heads:
        raise ValueError(
            f"hidden_size ({hidden_size}) must be divisible by num_heads ({num_heads}), "
            f"and num_heads by num_kv_heads ({num_kv_heads})"
        )
    import torch
    from transformers import GenerationConfig, Qwen3Config, Qwen3ForCausalLM

    tokenizer = build_tokenizer(vocab_size)
    eos_id = tokenizer.convert_tokens_to_ids("<|im_end|>")
    pad_id = tokenizer.convert_tokens_to_ids("<|endoftext|>")
    config = Qwen3Config(
        vocab_size=len(tokenizer),
        hidden_size=hidden_size,
        intermediate_size=intermediate_size,
        num_hidden_layers=num_layers,
        num_attention_heads=num_heads,
        num_key_value_heads=num_kv_heads,
        head_dim=hidden_size // num_heads,
        max_position_embeddings=max_position_embeddings,
        tie_word_embeddings=True,
        eos_token_id=eos_id,
        pad_token_id=pad_id,
        bos_token_id=None,
    )
    generator_state = torch.random.get_rng_state()
    torch.manual_seed(seed)
    try:
        model = Qwen3ForCausalLM(config)
    finally:
        torch.random.set_rng_state(generator_state)
    model.generation_config = GenerationConfig(
        eos_token_id=[eos_id, pad_id], pad_token_id=pad_id, do_sample=False
    )
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    settings = {
        "hidden_size": hidden_size,
        "num_layers": num_layers,
        "num_heads": num_heads,
        "num_kv_heads": num_kv_heads,
        "intermediate_size": intermediate_size,
        "vocab_size": vocab_size,
        "max_position_embeddings": max_position_embeddings,
        "seed": seed,
    }
    (out / "flowsteer_tiny.json").write_text(
        json.dumps({"builder": "flowsteer.models.tiny.build_tiny_model", **settings}, indent=2)
    )
    return out
