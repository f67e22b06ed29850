"""`VLLMEngine` for real: an in-process vLLM on the tiny model (runs in the vLLM venv only).

The tiny model is built with a head dimension of 32, the smallest the CPU attention kernels
take. One engine serves the whole module (starting vLLM costs seconds of scarce CPU). Log-probs
are compared with the trainer's recomputation (a float32 transformers forward) on the same
tokens; both sides compute in float32, so they agree to ~1e-6 and 1e-4 leaves room for
kernel-order differences only.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import pytest

from flowsteer.rollout.engine import Generation, GenerationRequest, SamplingParams

pytestmark = pytest.mark.vllm

MAX_MODEL_LEN = 4096  # room for the policy's system prompt in the runner test
ATOL = 1e-4


def _build(path, seed: int):
    from flowsteer.models.tiny import build_tiny_model

    return build_tiny_model(path, hidden_size=64, num_heads=2, num_kv_heads=1, seed=seed)


def _policy(path, lora_seed: int | None = None):
    """The trainer's policy on ``path``; with a seed, LoRA with random (non-zero) adapters."""
    import torch

    from flowsteer.rl.policy import LoraSettings, Policy

    if lora_seed is None:
        return Policy(str(path)).eval()
    policy = Policy(str(path), lora=LoraSettings(r=8, alpha=16, dropout=0.0)).eval()
    generator = torch.Generator().manual_seed(lora_seed)
    with torch.no_grad():
        for name, param in policy.model.named_parameters():
            if "lora_B" in name:  # peft starts B at zero: the adapter would change nothing
                param.copy_(torch.randn(param.shape, generator=generator) * 0.2)
    return policy


def trainer_logprobs(policy, prompt: Sequence[int], tokens: Sequence[int], temperature=1.0):
    """What the trainer computes (`Policy.token_logprobs` at the sampling temperature) for the
    continuation ``tokens``, and the model's argmax after each prefix."""
    import torch

    ids = torch.tensor([[*prompt, *tokens]])
    with torch.no_grad():
        scored = policy.token_logprobs(ids, torch.ones_like(ids), temperature=temperature)
        logprobs = scored.logprobs[0, len(prompt) :]
        argmax = policy.model(ids).logits[0, len(prompt) - 1 : -1].argmax(-1)
    return logprobs.tolist(), argmax.tolist()


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    root = tmp_path_factory.mktemp("vllm_engine")
    return _build(root / "tiny", seed=0), _build(root / "tiny_seed1", seed=1)


@pytest.fixture(scope="module")
def engine(models):
    from flowsteer.rollout.vllm_engine import VLLMEngine

    engine = VLLMEngine(
        models[0],
        dtype="float32",
        max_model_len=MAX_MODEL_LEN,
        kv_cache_memory_bytes=64 << 20,
        max_num_seqs=8,
        enforce_eager=True,
        seed=0,
    )
    engine.start()
    return engine


@pytest.fixture(scope="module")
def prompts(models):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(models[0])
    texts = ["How many eggs does Janet sell every day?", "def solve():\n    return 42\n"]
    short = [tokenizer(text)["input_ids"] for text in texts]
    # Longer than one 128-token KV block, so the prefix cache really holds it.
    long = (tokenizer("the question and the answer " * 40)["input_ids"])[:160]
    return [*short, long]


def _run(engine, requests) -> list[Generation]:
    return asyncio.run(engine.generate(requests))


def test_samples_token_prompts_with_the_trainers_logprobs(engine, models, prompts):
    # At any temperature the returned log-prob is the trainer's at that temperature.
    requests = [
        GenerationRequest(p, SamplingParams(max_tokens=12, temperature=t, seed=7))
        for t in (1.0, 0.7)
        for p in prompts
    ]
    outputs = _run(engine, requests)
    model = _policy(models[0])
    for request, out in zip(requests, outputs, strict=True):
        assert out.error is None and out.finish_reason == "length"
        assert len(out.token_ids) == len(out.logprobs) == 12
        temperature = request.sampling.temperature
        expected, _ = trainer_logprobs(model, request.prompt_ids, out.token_ids, temperature)
        assert out.logprobs == pytest.approx(expected, abs=ATOL)
        if temperature != 1.0:  # and not the raw model's (vLLM's default logprobs_mode)
            raw, _ = trainer_logprobs(model, request.prompt_ids, out.token_ids)
            assert out.logprobs != pytest.approx(raw, abs=1e-3)


def test_truncated_sampling_returns_the_truncated_distributions_logprobs(engine, models, prompts):
    # processed_logprobs: after top-k/top-p, renormalised over the kept tokens, so never below
    # the trainer's untruncated tempered log-prob (the gap is minus the log of the kept mass).
    truncated = SamplingParams(max_tokens=12, temperature=0.7, top_k=20, top_p=0.8, seed=7)
    (out,) = _run(engine, [GenerationRequest(prompts[0], truncated)])
    expected, _ = trainer_logprobs(_policy(models[0]), prompts[0], out.token_ids, 0.7)
    gaps = [got - want for got, want in zip(out.logprobs, expected, strict=True)]
    assert min(gaps) > -ATOL and max(gaps) > 1e-3


def test_greedy_follows_the_models_argmax(engine, models, prompts):
    outputs = _run(engine, [GenerationRequest(p, SamplingParams(8, 0.0)) for p in prompts])
    model = _policy(models[0])
    for prompt, out in zip(prompts, outputs, strict=True):
        logprobs, argmax = trainer_logprobs(model, prompt, out.token_ids)
        assert out.token_ids == argmax
        # Greedy samples no distribution: its log-probs are at temperature 1, as HFEngine's.
        assert out.logprobs == pytest.approx(logprobs, abs=ATOL)


def test_seeds_reproduce_and_differ(engine, prompts):
    def sample(seed):
        sampling = SamplingParams(max_tokens=12, temperature=1.0, seed=seed)
        return _run(engine, [GenerationRequest(prompts[0], sampling)])[0].token_ids

    assert sample(3) == sample(3)
    assert sample(3) != sample(4)
    # A seeded request samples the same whatever else is in the batch.
    batch = [
        GenerationRequest(prompts[1], SamplingParams(max_tokens=5, temperature=1.0, seed=1)),
        GenerationRequest(prompts[0], SamplingParams(max_tokens=12, temperature=1.0, seed=3)),
    ]
    assert _run(engine, batch)[1].token_ids == sample(3)


def test_stops_at_a_stop_token_and_returns_it(engine, prompts):
    free = _run(engine, [GenerationRequest(prompts[0], SamplingParams(16, 1.0, seed=5))])[0]
    tokens = free.token_ids
    # The first token that did not occur earlier in the continuation: stopping on it ends there.
    k = next(i for i in range(1, len(tokens)) if tokens[i] not in tokens[:i])
    stopping = SamplingParams(16, 1.0, stop_token_ids=(tokens[k],), seed=5)
    out = _run(engine, [GenerationRequest(prompts[0], stopping)])[0]
    assert out.finish_reason == "stop"
    assert out.token_ids == tokens[: k + 1]
    assert out.logprobs == pytest.approx(free.logprobs[: k + 1], abs=ATOL)


def test_min_tokens_holds_the_stop_ids_until_then(engine, models, prompts):
    from transformers import AutoTokenizer

    stops = tuple(
        range(0, AutoTokenizer.from_pretrained(models[0]).vocab_size, 2)
    )  # half the vocabulary stops a turn
    early = SamplingParams(12, 1.0, stop_token_ids=stops, seed=3)
    held = SamplingParams(12, 1.0, stop_token_ids=stops, seed=3, min_tokens=9)
    a, b = _run(engine, [GenerationRequest(prompts[0], early), GenerationRequest(prompts[0], held)])
    assert a.finish_reason == "stop" and len(a.token_ids) < 9
    assert len(b.token_ids) >= 9 and not set(b.token_ids[:8]) & set(stops)


def test_bad_requests_abort_alone_and_constraints_raise(engine, prompts):
    ok = GenerationRequest(prompts[0], SamplingParams(4, 0.0))
    too_long = GenerationRequest([5] * MAX_MODEL_LEN, SamplingParams(4, 0.0))
    outputs = _run(engine, [too_long, ok, GenerationRequest([], SamplingParams(4, 0.0))])
    assert outputs[0].finish_reason == "abort" and "max_model_len" in outputs[0].error
    assert outputs[1].finish_reason == "length" and len(outputs[1].token_ids) == 4
    assert outputs[2].finish_reason == "abort" and "empty prompt" in outputs[2].error
    with pytest.raises(NotImplementedError, match="constraint of request 0"):
        _run(engine, [GenerationRequest(prompts[0], SamplingParams(4), constraint="grammar")])


def test_constrained_turns_are_accepted_actions_with_hfengines_logprobs(engine, models, prompts):
    """Under a grammar (vLLM's structured outputs): each turn is an action the canvas accepts,
    ended by the stop token, and its log-probs are renormalised over the allowed tokens, the
    quantity `HFEngine` returns (its replay on the same tokens), to 1e-4."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from flowsteer.canvas import Canvas
    from flowsteer.tasks import Task
    from tests.rollout.conftest import empty_canvas_constraint, grammar_replay

    tok = AutoTokenizer.from_pretrained(models[0])
    # The model's EOS ids (its generation config): vLLM's grammar backend admits them all.
    stops = tuple(tok.convert_tokens_to_ids(["<|im_end|>", "<|endoftext|>"]))
    constraint = empty_canvas_constraint()
    requests = [
        GenerationRequest(p, SamplingParams(48, 1.0, stop_token_ids=stops, seed=s), constraint)
        for s, p in enumerate(prompts)
    ]
    requests.append(GenerationRequest(prompts[0], SamplingParams(8, 1.0, seed=1)))  # free row
    outputs = _run(engine, requests)
    assert outputs[-1].error is None and len(outputs[-1].token_ids) == 8
    model = AutoModelForCausalLM.from_pretrained(models[0]).float().eval()
    for request, out in zip(requests[:-1], outputs, strict=False):
        assert out.error is None and out.finish_reason == "stop" and out.token_ids[-1] in stops
        canvas = Canvas(Task("t/0", "toy", "math", "What is 2 + 2?", "4"))
        step = asyncio.run(canvas.step(tok.decode(out.token_ids[:-1])))
        assert step.info.valid, step.info.error
        expected, _ = grammar_replay(
            model, tok, request.prompt_ids, out.token_ids, constraint.ebnf, stops
        )
        assert out.logprobs == pytest.approx(expected, abs=ATOL)
        assert out.constraint_mass is None  # not observable through vLLM


def test_weight_push_serves_the_new_weights_without_stale_prefix_cache(engine, models, prompts):
    import torch

    old, new = _policy(models[0]), _policy(models[1])
    sampling = SamplingParams(max_tokens=8, temperature=1.0, seed=11)
    requests = [GenerationRequest(p, sampling) for p in prompts]
    before = _run(engine, requests)  # also fills the prefix cache with the old weights' KV
    assert engine.weights_version == 0

    asyncio.run(engine.sync_weights(new, version=1))
    assert engine.weights_version == 1
    after = _run(engine, requests)
    for prompt, out in zip(prompts, after, strict=True):
        # Stale KV of the cached 128-token block of the long prompt would show here.
        assert out.logprobs == pytest.approx(
            trainer_logprobs(new, prompt, out.token_ids)[0], abs=ATOL
        )
        assert out.logprobs != pytest.approx(
            trainer_logprobs(old, prompt, out.token_ids)[0], abs=1e-3
        )

    # Random tiny weights give near-uniform next-token distributions, where a seeded sample is
    # decided by the seed's noise rather than the model. A sharpened model (tied embeddings: the
    # logits scale with them) makes the pushed weights visibly change the sampled turns.
    with torch.no_grad():
        new.model.get_input_embeddings().weight.mul_(30.0)
    asyncio.run(engine.sync_weights(new, version=2))
    sharp = _run(engine, requests)
    for prompt, out in zip(prompts, sharp, strict=True):
        assert out.logprobs == pytest.approx(
            trainer_logprobs(new, prompt, out.token_ids)[0], abs=ATOL
        )
    assert [out.token_ids for out in sharp] != [out.token_ids for out in before]
    greedy = _run(engine, [GenerationRequest(p, SamplingParams(6, 0.0)) for p in prompts])
    for prompt, out in zip(prompts, greedy, strict=True):
        assert out.token_ids == trainer_logprobs(new, prompt, out.token_ids)[1]

    # A LoRA policy is pushed merged: the engine then samples from base + adapter.
    lora = _policy(models[0], lora_seed=0)
    asyncio.run(engine.sync_weights(lora, version=3))
    merged = _run(engine, requests)
    for prompt, out in zip(prompts, merged, strict=True):
        assert out.logprobs == pytest.approx(
            trainer_logprobs(lora, prompt, out.token_ids)[0], abs=ATOL
        )
        assert out.logprobs != pytest.approx(
            trainer_logprobs(old, prompt, out.token_ids)[0], abs=1e-3
        )

    # And back: pushing the original weights restores the original samples exactly.
    asyncio.run(engine.sync_weights(old, version=4))
    again = _run(engine, requests)
    assert [out.token_ids for out in again] == [out.token_ids for out in before]
    assert engine.weights_version == 4


def test_plays_episodes_in_the_rollout_runner(engine, models, math_task):
    from transformers import AutoTokenizer

    from flowsteer.rewards.workflow_reward import WorkflowReward
    from flowsteer.rollout import RolloutRunner

    tokenizer = AutoTokenizer.from_pretrained(models[0])
    runner = RolloutRunner(
        engine,
        tokenizer,
        None,
        WorkflowReward(),
        max_turns=2,
        max_context_tokens=MAX_MODEL_LEN,
        sampling=SamplingParams(max_tokens=16),
    )
    trajectories = asyncio.run(runner.run([math_task], 2, seed=0))
    policy = _policy(models[0])  # what the engine serves (the push test ends by restoring it)
    for trajectory in trajectories:
        assert trajectory.error is None and trajectory.turns == 2
        assert trajectory.weights_version == engine.weights_version
        sampled = [i for i, m in enumerate(trajectory.loss_mask) if m]
        assert sampled and sampled[0] > 0
        ids = trajectory.token_ids
        expected, _ = trainer_logprobs(policy, ids[: sampled[0]], ids[sampled[0] :])
        engine_logprobs = trajectory.rollout_logprobs[sampled[0] :]
        for i in sampled:
            j = i - sampled[0]
            assert engine_logprobs[j] == pytest.approx(expected[j], abs=ATOL)
