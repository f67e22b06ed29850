"""The tiny offline policy: builds without downloads, generates, and round-trips."""

from __future__ import annotations

import filecmp

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from flowsteer.models.tiny import SPECIAL_TOKENS, build_tiny_model, build_tokenizer


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory):
    return build_tiny_model(tmp_path_factory.mktemp("tiny"))


def test_loads_as_a_qwen3_model_with_its_tokenizer(tiny_dir):
    model = AutoModelForCausalLM.from_pretrained(tiny_dir)
    tokenizer = AutoTokenizer.from_pretrained(tiny_dir)
    assert model.config.model_type == "qwen3"
    assert model.config.num_hidden_layers == 2
    assert model.num_parameters() < 1_000_000
    assert model.get_input_embeddings().num_embeddings == len(tokenizer)
    assert tokenizer.eos_token == "<|im_end|>" and tokenizer.pad_token == "<|endoftext|>"


def test_generates_through_generate(tiny_dir):
    model = AutoModelForCausalLM.from_pretrained(tiny_dir)
    tokenizer = AutoTokenizer.from_pretrained(tiny_dir)
    prompt = tokenizer.apply_chat_template(
        [{"role": "user", "content": "What is 2 + 3?"}], tokenize=False, add_generation_prompt=True
    )
    inputs = tokenizer([prompt, prompt + "Let"], return_tensors="pt", padding=True)
    out = model.generate(**inputs, max_new_tokens=8, do_sample=False, eos_token_id=None)
    assert out.shape == (2, inputs["input_ids"].shape[1] + 8)
    torch.manual_seed(0)
    sampled = model.generate(**inputs, max_new_tokens=8, do_sample=True, temperature=1.0)
    assert isinstance(tokenizer.decode(sampled[0]), str)


def test_save_and_reload_give_identical_logits(tiny_dir, tmp_path):
    model = AutoModelForCausalLM.from_pretrained(tiny_dir)
    tokenizer = AutoTokenizer.from_pretrained(tiny_dir)
    model.save_pretrained(tmp_path)
    tokenizer.save_pretrained(tmp_path)
    again = AutoModelForCausalLM.from_pretrained(tmp_path)
    ids = tokenizer("<think>plan</think><action>finish</action>", return_tensors="pt")["input_ids"]
    with torch.no_grad():
        assert torch.equal(model(ids).logits, again(ids).logits)
    assert (
        AutoTokenizer.from_pretrained(tmp_path)("abc 18")["input_ids"]
        == tokenizer("abc 18")["input_ids"]
    )


def test_build_is_deterministic(tiny_dir, tmp_path):
    other = build_tiny_model(tmp_path / "again")
    for name in ("tokenizer.json", "model.safetensors", "config.json"):
        assert filecmp.cmp(tiny_dir / name, other / name, shallow=False), name
    different = build_tiny_model(tmp_path / "seed1", seed=1)
    assert not filecmp.cmp(
        tiny_dir / "model.safetensors", different / "model.safetensors", shallow=False
    )


def test_existing_directory_is_reused_unless_overwrite(tiny_dir):
    stamp = (tiny_dir / "model.safetensors").stat().st_mtime_ns
    assert build_tiny_model(tiny_dir, hidden_size=32) == tiny_dir
    assert (tiny_dir / "model.safetensors").stat().st_mtime_ns == stamp


def test_chat_template_marks_thinking_and_assistant_tokens():
    tokenizer = build_tokenizer()
    for token in SPECIAL_TOKENS:
        assert tokenizer.convert_tokens_to_ids(token) != tokenizer.unk_token_id
        assert tokenizer.tokenize(token) == [token]
    messages = [
        {"role": "system", "content": "sys"},
        {"role": "user", "content": "q"},
        {"role": "assistant", "content": "<action>finish</action>", "reasoning_content": "done"},
    ]
    text = tokenizer.apply_chat_template(messages, tokenize=False)
    assert "<think>\ndone\n</think>\n\n<action>finish</action><|im_end|>" in text
    enc = tokenizer.apply_chat_template(
        messages, tokenize=True, return_dict=True, return_assistant_tokens_mask=True
    )
    marked = [i for i, m in zip(enc["input_ids"], enc["assistant_masks"], strict=True) if m]
    assert (
        tokenizer.decode(marked) == "<think>\ndone\n</think>\n\n<action>finish</action><|im_end|>"
    )
    no_think = tokenizer.apply_chat_template(
        messages[:2], tokenize=False, add_generation_prompt=True, enable_thinking=False
    )
    assert no_think.endswith("<|im_start|>assistant\n<think>\n\n</think>\n\n")


def test_bad_shapes_are_rejected(tmp_path):
    with pytest.raises(ValueError, match="divisible"):
        build_tiny_model(tmp_path, hidden_size=30, num_heads=4)
    with pytest.raises(ValueError, match="vocab_size must be at least"):
        build_tokenizer(vocab_size=100)


@pytest.mark.gpu
def test_generates_on_cuda_like_on_cpu(tiny_dir):
    """The same checkpoint decodes greedily to the same tokens on a GPU as on the CPU."""
    tokenizer = AutoTokenizer.from_pretrained(tiny_dir)
    ids = tokenizer("<action>add</action><operator>Plan", return_tensors="pt")["input_ids"]
    cpu = AutoModelForCausalLM.from_pretrained(tiny_dir)
    gpu = AutoModelForCausalLM.from_pretrained(tiny_dir).to("cuda")
    with torch.no_grad():
        cpu_logits = cpu(ids).logits
        gpu_logits = gpu(ids.to("cuda")).logits.cpu()
    torch.testing.assert_close(gpu_logits, cpu_logits, atol=1e-3, rtol=1e-3)


def test_generation_stops_at_the_end_of_the_assistant_turn(tiny_dir):
    from transformers import GenerationConfig

    tokenizer = AutoTokenizer.from_pretrained(tiny_dir)
    config = GenerationConfig.from_pretrained(tiny_dir)
    im_end, pad = tokenizer.convert_tokens_to_ids(["<|im_end|>", "<|endoftext|>"])
    assert im_end in config.eos_token_id and config.pad_token_id == pad
    assert config.do_sample is False
