"""`VLLMEngine` sleep mode on a GPU: the update frees the KV cache, the next weight push brings the
engine back serving the new weights (runs in the vLLM venv on a CUDA machine only)."""

import asyncio

import pytest

from tests.rollout.test_vllm_engine import _build, _policy, trainer_logprobs

pytestmark = [pytest.mark.vllm, pytest.mark.gpu, pytest.mark.slow]


def test_sleep_frees_memory_and_wake_up_serves_the_pushed_weights(tmp_path):
    torch = pytest.importorskip("torch")
    pytest.importorskip("vllm")
    if not torch.cuda.is_available():
        pytest.skip("needs a CUDA GPU")
    from flowsteer.rollout.engine import GenerationRequest, SamplingParams
    from flowsteer.rollout.vllm_engine import VLLMEngine

    model = _build(tmp_path / "tiny", seed=0)
    engine = VLLMEngine(
        model,
        dtype="float32",
        max_model_len=512,
        gpu_memory_utilization=0.2,
        enforce_eager=True,
        sleep_mode=True,
        sleep_level=1,
    )
    engine.start()
    prompt = list(range(10, 60))
    request = GenerationRequest(prompt, SamplingParams(max_tokens=16, temperature=1.0, seed=3))
    asyncio.run(engine.generate([request]))
    engine.sleep()
    assert engine.memory["engine_freed_gib"] > 0.1, engine.memory  # at least the KV cache
    policy = _policy(model, lora_seed=1)
    asyncio.run(engine.sync_weights(policy, 1))
    (generation,) = asyncio.run(engine.generate([request]))
    expected, _ = trainer_logprobs(policy, prompt, generation.token_ids)
    assert generation.finish_reason in ("stop", "length")
    assert max(abs(a - b) for a, b in zip(generation.logprobs, expected, strict=True)) < 1e-3
