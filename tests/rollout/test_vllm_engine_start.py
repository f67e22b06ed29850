"""`VLLMEngine` before vLLM: construction is free, `start` refuses what it cannot honour."""

import pytest

from flowsteer.rollout.vllm_engine import VLLMEngine


def test_constructor_does_not_build_vllm():
    engine = VLLMEngine("no/such/model", max_num_batched_tokens=512, enable_chunked_prefill=False)
    assert engine._llm is None
    with pytest.raises(RuntimeError, match="not started"):
        _ = engine.llm


@pytest.mark.skipif(__import__("torch").cuda.is_available(), reason="checks the CPU refusal")
def test_sleep_mode_is_refused_without_cuda():
    with pytest.raises(ValueError, match="sleep_mode needs a CUDA device"):
        VLLMEngine("no/such/model", sleep_mode=True).start()


def test_world_size_mismatch_fails_at_start():
    with pytest.raises(RuntimeError, match=r"trainer runs 2 rank.*world has 1"):
        VLLMEngine("no/such/model").start(rank=0, world_size=2, device_index=0)


def test_bad_sizes_are_refused():
    with pytest.raises(ValueError, match="max_num_batched_tokens"):
        VLLMEngine("m", max_num_batched_tokens=0)
    with pytest.raises(ValueError, match="sleep_level"):
        VLLMEngine("m", sleep_level=3)
