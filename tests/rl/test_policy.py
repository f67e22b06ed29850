"""`Policy` on the tiny Qwen3: chunked log-probs, references, merged weights and saving."""

from __future__ import annotations

import copy
import json
import logging
import re

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from flowsteer.models.tiny import build_tiny_model, build_tokenizer
from flowsteer.rl.policy import LoraSettings, Policy, _check_head_reproduces_logits

LORA = LoraSettings(r=4, alpha=8, dropout=0.0)


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory):
    return build_tiny_model(tmp_path_factory.mktemp("tiny"))


def _batch(vocab: int, seed: int = 0):
    """Three sequences of 13 tokens; the second is right-padded after 9 real tokens."""
    gen = torch.Generator().manual_seed(seed)
    ids = torch.randint(0, vocab, (3, 13), generator=gen)
    mask = torch.ones_like(ids)
    mask[1, 9:] = 0
    return ids, mask


def _vocab(policy: Policy) -> int:
    return policy.model.config.vocab_size


def _perturb_adapters(policy: Policy, seed: int = 1) -> None:
    """LoRA B starts at zero (adapter = identity) and A at random: set both, seeded, so the
    adapter matters and two policies built alike hold the same adapter."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, param in policy.model.named_parameters():
            if "lora_" in name:
                param.copy_(0.3 * torch.randn(param.shape, generator=gen))


def _naive(model, ids, mask, *, with_entropy=False, temperature=1.0):
    """The reference computation: full float32 log-softmax over the vocabulary, all at once."""
    positions = (mask.cumsum(-1) - 1).clamp(min=0)
    logits = model(input_ids=ids, attention_mask=mask, position_ids=positions).logits
    logp = (logits.float() / temperature).log_softmax(-1)[:, :-1]  # [B, T-1, V]
    scored = mask[:, 1:].bool() & mask[:, :-1].bool()
    lp = logp.gather(-1, ids[:, 1:, None]).squeeze(-1) * scored
    lp = torch.nn.functional.pad(lp, (1, 0))
    if not with_entropy:
        return lp, None
    ent = -(logp.exp() * logp).sum(-1) * scored
    return lp, torch.nn.functional.pad(ent, (1, 0))


def _grads(policy, loss):
    params = policy.trainable_parameters()
    return torch.autograd.grad(loss, params)


@pytest.mark.parametrize("chunk", [4, None], ids=["chunks", "one-chunk"])  # 4 does not divide 32
@pytest.mark.parametrize("lora", [None, LORA], ids=["full", "lora"])
@pytest.mark.parametrize("with_entropy", [False, True])
def test_chunked_logprobs_equal_the_naive_ones_in_values_and_gradients(
    tiny_dir, lora, with_entropy, chunk
):
    policy = Policy(str(tiny_dir), lora=lora, logprob_chunk_size=chunk)
    if lora:
        _perturb_adapters(policy)
    ids, mask = _batch(_vocab(policy))
    weights = torch.randn(ids.shape, generator=torch.Generator().manual_seed(3))

    out = policy.token_logprobs(ids, mask, with_entropy=with_entropy)
    naive_lp, naive_ent = _naive(policy.model, ids, mask, with_entropy=with_entropy)
    torch.testing.assert_close(out.logprobs, naive_lp, atol=1e-5, rtol=0)
    assert out.logprobs.dtype == torch.float32
    assert torch.all(out.logprobs[:, 0] == 0) and torch.all(out.logprobs[1, 9:] == 0)

    loss = (out.logprobs * weights).sum()
    naive_loss = (naive_lp * weights).sum()
    if with_entropy:
        torch.testing.assert_close(out.entropy, naive_ent, atol=1e-5, rtol=0)
        loss = loss + (out.entropy * weights.flip(0)).sum()
        naive_loss = naive_loss + (naive_ent * weights.flip(0)).sum()
    for got, want in zip(_grads(policy, loss), _grads(policy, naive_loss), strict=True):
        torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-4)


def test_left_and_right_padding_score_alike(tiny_dir):
    policy = Policy(str(tiny_dir))
    ids, _ = _batch(_vocab(policy))
    real = ids[0, :9]
    right = torch.cat([real, torch.zeros(4, dtype=torch.long)])
    left = torch.cat([torch.zeros(4, dtype=torch.long), real])
    mask_right = torch.tensor([1] * 9 + [0] * 4)
    mask_left = mask_right.flip(0)
    with torch.no_grad():
        out = policy.token_logprobs(
            torch.stack([right, left]), torch.stack([mask_right, mask_left])
        )
    torch.testing.assert_close(out.logprobs[0, :9], out.logprobs[1, 4:], atol=1e-5, rtol=0)


def test_lora_reference_is_the_base_model_and_leaves_the_adapter_on(tiny_dir):
    policy = Policy(str(tiny_dir), lora=LORA, with_reference=True)
    _perturb_adapters(policy)
    ids, mask = _batch(_vocab(policy))
    base = AutoModelForCausalLM.from_pretrained(tiny_dir)
    with torch.no_grad():
        base_lp, _ = _naive(base, ids, mask)
        before = policy.token_logprobs(ids, mask).logprobs
        reference = policy.reference_logprobs(ids, mask)
        after = policy.token_logprobs(ids, mask).logprobs
    torch.testing.assert_close(reference, base_lp, atol=1e-5, rtol=0)
    assert not torch.allclose(before, base_lp, atol=1e-3)  # the adapter does change the policy
    torch.testing.assert_close(after, before, atol=0, rtol=0)
    assert policy.reference_model is None  # LoRA needs no second model


def test_full_finetuning_reference_is_a_frozen_copy(tiny_dir):
    policy = Policy(str(tiny_dir), with_reference=True)
    ids, mask = _batch(_vocab(policy))
    trainable = {id(p) for p in policy.trainable_parameters()}
    assert not any(id(p) in trainable for p in policy.reference_model.parameters())
    assert not any(p.requires_grad for p in policy.reference_model.parameters())
    policy.train()
    assert not policy.reference_model.training and policy.model.training

    initial = policy.reference_logprobs(ids, mask)
    optimizer = torch.optim.SGD(policy.trainable_parameters(), lr=0.1)
    mean_lp = policy.token_logprobs(ids, mask).logprobs.sum() / mask.sum()
    (-mean_lp).backward()
    optimizer.step()
    with torch.no_grad():
        moved = policy.token_logprobs(ids, mask).logprobs
    assert not torch.allclose(moved, initial, atol=1e-3)
    torch.testing.assert_close(policy.reference_logprobs(ids, mask), initial, atol=0, rtol=0)


@pytest.mark.parametrize("lora", [None, LORA], ids=["full", "lora"])
def test_no_reference_unless_asked(tiny_dir, lora):
    policy = Policy(str(tiny_dir), lora=lora)
    assert policy.reference_model is None
    ids, mask = _batch(_vocab(policy))
    with pytest.raises(RuntimeError, match="with_reference=True"):
        policy.reference_logprobs(ids, mask)


def test_lora_trains_only_the_adapter(tiny_dir):
    policy = Policy(str(tiny_dir), lora=LORA)
    names = [n for n, p in policy.model.named_parameters() if p.requires_grad]
    assert names and all("lora_" in n for n in names)
    assert len(policy.trainable_parameters()) == len(names)
    assert policy.is_lora and not Policy(str(tiny_dir)).is_lora


def test_merged_state_items_match_peft_merge_and_unload(tiny_dir):
    policy = Policy(str(tiny_dir), lora=LORA)
    _perturb_adapters(policy)
    ids, mask = _batch(_vocab(policy))
    with torch.no_grad():
        before = policy.token_logprobs(ids, mask).logprobs
    merged = dict(policy.merged_state_items())
    expected = copy.deepcopy(policy.model).merge_and_unload().state_dict()
    base_keys = list(AutoModelForCausalLM.from_pretrained(tiny_dir).state_dict())
    assert list(merged) == base_keys
    for name, tensor in expected.items():
        torch.testing.assert_close(merged[name], tensor, atol=1e-6, rtol=0)
    q = "model.layers.0.self_attn.q_proj.weight"
    base_q = AutoModelForCausalLM.from_pretrained(tiny_dir).state_dict()[q]
    assert not torch.allclose(merged[q], base_q)  # the adapter is really in there
    with torch.no_grad():  # the live model is untouched: still unmerged, same outputs
        torch.testing.assert_close(
            policy.token_logprobs(ids, mask).logprobs, before, atol=0, rtol=0
        )
    assert all(not m.merged for m in policy.model.modules() if hasattr(m, "merged"))


def test_full_finetuning_state_items_are_the_model_weights(tiny_dir):
    policy = Policy(str(tiny_dir))
    items = dict(policy.merged_state_items())
    assert list(items) == list(AutoModelForCausalLM.from_pretrained(tiny_dir).state_dict())
    for name, tensor in policy.model.state_dict().items():
        assert torch.equal(items[name], tensor)


def test_save_adapter_round_trips_through_peft(tiny_dir, tmp_path):
    from peft import PeftModel

    policy = Policy(str(tiny_dir), lora=LORA)
    _perturb_adapters(policy)
    policy.save_adapter(tmp_path / "adapter")
    config = json.loads((tmp_path / "adapter" / "adapter_config.json").read_text())
    assert config["r"] == 4 and config["lora_alpha"] == 8
    assert set(config["target_modules"]) == set(LORA.target_modules)
    reloaded = PeftModel.from_pretrained(
        AutoModelForCausalLM.from_pretrained(tiny_dir), tmp_path / "adapter"
    )
    ids, mask = _batch(_vocab(policy))
    with torch.no_grad():
        torch.testing.assert_close(
            _naive(reloaded, ids, mask)[0],
            policy.token_logprobs(ids, mask).logprobs,
            atol=1e-5,
            rtol=0,
        )
    with pytest.raises(RuntimeError, match="LoRA"):
        Policy(str(tiny_dir)).save_adapter(tmp_path / "nope")


@pytest.mark.parametrize("lora", [None, LORA], ids=["full", "lora"])
def test_save_pretrained_round_trips_with_lora_merged(tiny_dir, tmp_path, lora):
    policy = Policy(str(tiny_dir), lora=lora)
    if lora:
        _perturb_adapters(policy)
    else:
        with torch.no_grad():
            policy.model.model.layers[0].mlp.up_proj.weight.mul_(1.5)
    policy.save_pretrained(tmp_path / "saved")
    again = Policy(str(tmp_path / "saved"))
    assert not again.is_lora
    ids, mask = _batch(_vocab(policy))
    with torch.no_grad():
        torch.testing.assert_close(
            again.token_logprobs(ids, mask).logprobs,
            policy.token_logprobs(ids, mask).logprobs,
            atol=1e-5,
            rtol=0,
        )
    assert again.tokenizer("abc 18")["input_ids"] == policy.tokenizer("abc 18")["input_ids"]


@pytest.mark.parametrize("lora", [None, LORA], ids=["full", "lora"])
def test_gradient_checkpointing_gives_the_same_gradients(tiny_dir, lora):
    grads = []
    for checkpointing in (False, True):
        policy = Policy(str(tiny_dir), lora=lora, gradient_checkpointing=checkpointing)
        if lora:
            _perturb_adapters(policy)
        policy.train()
        ids, mask = _batch(_vocab(policy))
        out = policy.token_logprobs(ids, mask, with_entropy=True)
        grads.append(_grads(policy, out.logprobs.sum() + out.entropy.sum()))
    assert policy.model.is_gradient_checkpointing
    for a, b in zip(*grads, strict=True):
        torch.testing.assert_close(a, b, atol=1e-6, rtol=1e-5)


def test_bfloat16_policy_returns_float32_logprobs_close_to_float32(tiny_dir):
    exact = Policy(str(tiny_dir))
    half = Policy(str(tiny_dir), dtype="bfloat16")
    assert half.model.dtype == torch.bfloat16
    ids, mask = _batch(_vocab(exact))
    with torch.no_grad():
        got = half.token_logprobs(ids, mask).logprobs
        want = exact.token_logprobs(ids, mask).logprobs
    assert got.dtype == torch.float32
    torch.testing.assert_close(got, want, atol=0.05, rtol=0)


def _tiny_gemma2(path, softcap: float):
    """A tiny Gemma2 with the tiny tokenizer; a small final soft-cap so it really bites."""
    from transformers import Gemma2Config, Gemma2ForCausalLM

    tokenizer = build_tokenizer()
    config = Gemma2Config(
        vocab_size=len(tokenizer),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=2,
        num_key_value_heads=1,
        head_dim=16,
        final_logit_softcapping=softcap,
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=None,
        eos_token_id=tokenizer.eos_token_id,
    )
    torch.manual_seed(0)
    model = Gemma2ForCausalLM(config)
    with torch.no_grad():
        model.lm_head.weight.mul_(50.0)  # logits well beyond the cap
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    return model


def test_final_logit_softcapping_is_applied(tmp_path):
    model = _tiny_gemma2(tmp_path / "gemma2", softcap=2.0)
    policy = Policy(str(tmp_path / "gemma2"), logprob_chunk_size=5)
    ids, mask = _batch(_vocab(policy))
    out = policy.token_logprobs(ids, mask)
    naive, _ = _naive(policy.model, ids, mask)
    torch.testing.assert_close(out.logprobs, naive, atol=1e-5, rtol=0)
    # Without the cap the head's logits are not the model's: the probe refuses such a pairing.
    with pytest.raises(ValueError, match="does not reproduce the model's logits"):
        _check_head_reproduces_logits(model, lambda logits: logits)


def test_missing_model_directory_is_named(tmp_path):
    missing = tmp_path / "no-such-model"
    with pytest.raises(FileNotFoundError, match=re.escape(str(missing))):
        Policy(str(missing))
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match=r"has no config\.json"):
        Policy(str(tmp_path / "empty"))


def test_bad_settings_are_refused(tiny_dir):
    with pytest.raises(ValueError, match="dtype"):
        Policy(str(tiny_dir), dtype="float64")
    with pytest.raises(ValueError, match="logprob_chunk_size"):
        Policy(str(tiny_dir), logprob_chunk_size=0)
    policy = Policy(str(tiny_dir))
    # The default chunk: 1,024 × 151,936 logits, so the tiny vocabulary's batch is one chunk.
    assert policy.logprob_chunk_size == 1024 * 151_936 // _vocab(policy)
    with pytest.raises(ValueError, match=r"must both be \[B, T\]"):
        policy.token_logprobs(torch.zeros(2, 3, dtype=torch.long), torch.ones(2, 4))


# ---- the behaviour policy: sampling temperature and dropout ---------------------------------


@pytest.mark.parametrize("lora", [None, LORA], ids=["full", "lora"])
def test_logprobs_at_a_temperature_are_of_the_tempered_distribution(tiny_dir, lora):
    policy = Policy(str(tiny_dir), lora=lora, with_reference=True, logprob_chunk_size=7)
    if lora is not None:
        _perturb_adapters(policy)
    ids, mask = _batch(_vocab(policy))
    base = AutoModelForCausalLM.from_pretrained(tiny_dir)
    with torch.no_grad():
        out = policy.token_logprobs(ids, mask, with_entropy=True, temperature=0.7)
        want_lp, want_ent = _naive(policy.model, ids, mask, with_entropy=True, temperature=0.7)
        reference = policy.reference_logprobs(ids, mask, temperature=0.7)
        raw = policy.token_logprobs(ids, mask).logprobs
        want_raw, _ = _naive(policy.model, ids, mask)
    torch.testing.assert_close(out.logprobs, want_lp, atol=1e-5, rtol=0)
    torch.testing.assert_close(out.entropy, want_ent, atol=1e-5, rtol=0)
    torch.testing.assert_close(raw, want_raw, atol=1e-5, rtol=0)  # the default stays T = 1
    assert (out.logprobs - raw).abs().max() > 1e-2  # the temperature does matter here
    if lora is not None:  # the reference (adapter off) at the same temperature
        with torch.no_grad():
            base_lp, _ = _naive(base, ids, mask, temperature=0.7)
        torch.testing.assert_close(reference, base_lp, atol=1e-5, rtol=0)


@pytest.mark.parametrize("temperature", [0.0, -1.0, float("nan"), float("inf")])
def test_a_temperature_that_is_not_positive_is_refused(tiny_dir, temperature):
    policy = Policy(str(tiny_dir))
    ids, mask = _batch(_vocab(policy))
    with pytest.raises(ValueError, match="temperature must be a positive number"):
        policy.token_logprobs(ids, mask, temperature=temperature)


def _with_attention_dropout(tiny_dir, out, p: float):
    """A copy of the tiny model whose config sets attention dropout (applied functionally)."""
    model = AutoModelForCausalLM.from_pretrained(tiny_dir)
    model.config.attention_dropout = p
    model.save_pretrained(out)
    AutoTokenizer.from_pretrained(tiny_dir).save_pretrained(out)
    return out


def test_dropout_is_off_by_default_so_training_mode_scores_as_eval(tiny_dir, tmp_path):
    path = _with_attention_dropout(tiny_dir, tmp_path / "dropout", 0.3)
    policy = Policy(str(path), lora=LoraSettings(r=4, alpha=8, dropout=0.3))
    _perturb_adapters(policy)  # B = 0 would hide the LoRA dropout
    ids, mask = _batch(_vocab(policy))
    assert all(m.p == 0 for m in policy.modules() if isinstance(m, torch.nn.Dropout))
    with torch.no_grad():
        policy.eval()
        scored = policy.token_logprobs(ids, mask).logprobs  # how old log-probs are scored
        policy.train()
        first = policy.token_logprobs(ids, mask).logprobs  # how the update sees them
        second = policy.token_logprobs(ids, mask).logprobs
    torch.testing.assert_close(first, scored, atol=1e-6, rtol=0)
    torch.testing.assert_close(second, scored, atol=1e-6, rtol=0)


def test_kept_dropout_is_warned_about_once_naming_the_setting(tiny_dir, tmp_path, caplog):
    path = _with_attention_dropout(tiny_dir, tmp_path / "dropout", 0.1)
    with caplog.at_level(logging.WARNING, logger="flowsteer.rl.policy"):
        policy = Policy(
            str(path), lora=LoraSettings(r=4, alpha=8, dropout=0.05), disable_dropout=False
        )
    (record,) = [r for r in caplog.records if r.name == "flowsteer.rl.policy"]
    message = record.getMessage()
    assert "disable_dropout=False" in message
    assert "lora_dropout=0.05" in message and "attention_dropout=0.1" in message
    # Kept means kept: training mode samples dropout masks.
    _perturb_adapters(policy)
    ids, mask = _batch(_vocab(policy))
    policy.train()
    with torch.no_grad():
        first = policy.token_logprobs(ids, mask).logprobs
        second = policy.token_logprobs(ids, mask).logprobs
    assert not torch.allclose(first, second, atol=1e-4)
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="flowsteer.rl.policy"):
        Policy(str(tiny_dir), lora=LoraSettings(r=4, alpha=8, dropout=0.0), disable_dropout=False)
    assert not caplog.records  # nothing to warn about: no dropout anywhere


FSDP_SCRIPT = """
import sys, torch, torch.distributed as dist
from torch.distributed.device_mesh import init_device_mesh
from torch.distributed.fsdp import fully_shard
from flowsteer.rl.policy import LoraSettings, Policy

dist.init_process_group("gloo")
mesh = init_device_mesh("cpu", (2,))
for lora in (None, LoraSettings(r=4, alpha=8, dropout=0.0)):
    torch.manual_seed(0)
    policy = Policy(sys.argv[1], lora=lora, with_reference=True)
    for name, param in policy.model.named_parameters():
        if "lora_B" in name:
            param.data.normal_()
    ids = torch.randint(0, 800, (2, 10))
    mask = torch.ones_like(ids)
    want = policy.token_logprobs(ids, mask).logprobs.detach()
    want_ref = policy.reference_logprobs(ids, mask)
    want_items = {k: v.clone() for k, v in policy.merged_state_items()}
    for layer in policy._causal_lm().model.layers:
        fully_shard(layer, mesh=mesh)
    fully_shard(policy, mesh=mesh)
    out = policy.token_logprobs(ids, mask, with_entropy=True)
    (out.logprobs.sum() + out.entropy.sum()).backward()
    assert torch.allclose(out.logprobs, want, atol=1e-5)
    assert all(p.grad is not None for p in policy.trainable_parameters())
    assert torch.allclose(policy.reference_logprobs(ids, mask), want_ref, atol=1e-5)
    items = dict(policy.merged_state_items())
    assert list(items) == list(want_items)
    assert all(torch.allclose(items[k], want_items[k], atol=1e-6) for k in items)
# One write per rank (atomic on a pipe), so the two ranks' lines never interleave.
sys.stdout.write(f"ok rank={dist.get_rank()}\\n")
sys.stdout.flush()
"""


@pytest.mark.slow
def test_works_under_fsdp2_on_two_cpu_ranks(tiny_dir, tmp_path):
    """fully_shard (gloo): log-probs, gradients, reference and merged weights as unsharded."""
    import os
    import re
    import subprocess
    import sys

    script = tmp_path / "fsdp.py"
    script.write_text(FSDP_SCRIPT)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node=2"]
    out = subprocess.run(
        [*command, str(script), str(tiny_dir)],
        capture_output=True,
        text=True,
        timeout=240,
        env=env,
        check=False,
    )
    assert out.returncode == 0, out.stderr[-4000:]
    assert sorted(re.findall(r"^ok rank=(\d)$", out.stdout, re.M)) == ["0", "1"], out.stdout
