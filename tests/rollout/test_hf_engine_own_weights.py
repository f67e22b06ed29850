"""`HFEngine(own_weights=True)`, the engine of asynchronous rollouts: it samples its own copy of
the policy, which only `sync_weights` changes (an optimizer step on the policy during generation
is invisible to it), samples exactly what the shared engine samples, and leaves the global torch
RNG (the trainer thread's) untouched."""

from __future__ import annotations

import asyncio
import copy
import threading

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from flowsteer.rollout import GenerationRequest, HFEngine, SamplingParams


class _Policy:
    """What `sync_weights` reads of a `Policy`: its ``model``."""

    def __init__(self, model: torch.nn.Module) -> None:
        self.model = model


@pytest.fixture
def models(tiny_dir):
    policy = AutoModelForCausalLM.from_pretrained(tiny_dir)
    tokenizer = AutoTokenizer.from_pretrained(tiny_dir)
    own = copy.deepcopy(policy).requires_grad_(False).eval()
    return policy, own, tokenizer


def _requests(n: int = 2, tokens: int = 12) -> list[GenerationRequest]:
    params = [SamplingParams(max_tokens=tokens, temperature=1.0, seed=10 + i) for i in range(n)]
    return [GenerationRequest([1, 5, 9, 13 + i], p) for i, p in enumerate(params)]


def _ids(generations) -> list[list[int]]:
    return [g.token_ids for g in generations]


def _perturb(model: torch.nn.Module, scale: float = 0.5) -> None:
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * scale)


def test_samples_what_the_shared_engine_samples_without_the_global_rng(models):
    policy, own, tokenizer = models
    shared = HFEngine(policy, tokenizer)
    private = HFEngine(own, tokenizer, own_weights=True)
    expected = shared.generate_sync(_requests())
    state = torch.get_rng_state()
    got = private.generate_sync(_requests())
    assert torch.equal(torch.get_rng_state(), state)  # the rows draw from their own streams
    assert _ids(got) == _ids(expected)
    for a, b in zip(got, expected, strict=True):
        assert a.logprobs == pytest.approx(b.logprobs, abs=1e-5)


def test_policy_updates_during_generation_are_invisible_until_sync(models):
    policy, own, tokenizer = models
    engine = HFEngine(own, tokenizer, own_weights=True)
    before = _ids(engine.generate_sync(_requests()))
    result: dict[str, list] = {}
    worker = threading.Thread(target=lambda: result.update(ids=engine.generate_sync(_requests())))
    worker.start()
    steps = 0
    while worker.is_alive() or steps == 0:  # the "optimizer" keeps changing the policy meanwhile
        _perturb(policy)
        steps += 1
    worker.join()
    assert _ids(result["ids"]) == before
    pairs = zip(policy.parameters(), own.parameters(), strict=True)
    assert all(not torch.equal(a, b) for a, b in pairs)
    # The push makes the engine sample the policy as it is now.
    asyncio.run(engine.sync_weights(_Policy(policy), 7))
    assert engine.weights_version == 7
    for a, b in zip(policy.parameters(), own.parameters(), strict=True):
        assert torch.equal(a, b) and a.data_ptr() != b.data_ptr()
    now = _ids(HFEngine(policy, tokenizer).generate_sync(_requests()))
    assert _ids(engine.generate_sync(_requests())) == now != before


def test_sync_refuses_a_policy_of_another_shape(models, tiny_dir):
    _, own, tokenizer = models
    engine = HFEngine(own, tokenizer, own_weights=True)
    other = torch.nn.Linear(2, 2)
    with pytest.raises(ValueError, match="differ from the engine's copy"):
        asyncio.run(engine.sync_weights(_Policy(other), 1))
