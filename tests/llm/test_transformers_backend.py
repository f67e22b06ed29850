"""TransformersBackend on the tiny offline Qwen3 model: batching, left padding, error values."""

from __future__ import annotations

import asyncio
import pickle
import subprocess
import sys
import time
from pathlib import Path

import pytest

from flowsteer.llm import Completion, LLMBackend, TransformersBackend
from flowsteer.models.tiny import build_tiny_model

pytestmark = pytest.mark.timeout(120)

# Different lengths on purpose: batching them needs left padding to be right.
PROMPTS = [
    "hi",
    "what is the sum of two and three",
    "plan the solution step by step then check the final answer and format it",
    "write the code",
]


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny model with its weights scaled up so greedy decoding says varied things.

    At its default initialisation the tiny model greedily repeats one token for every prompt,
    which would let a broken left padding pass unnoticed.
    """
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    base = build_tiny_model(tmp_path_factory.mktemp("tiny"))
    model = AutoModelForCausalLM.from_pretrained(base)
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for param in model.parameters():
            if param.dim() > 1:
                param.copy_(torch.randn(param.shape, generator=generator) * 0.3)
    out = tmp_path_factory.mktemp("tiny_varied")
    model.save_pretrained(out)
    AutoTokenizer.from_pretrained(base).save_pretrained(out)
    return out


def chat(text: str) -> list[dict[str, str]]:
    return [{"role": "system", "content": "be brief"}, {"role": "user", "content": text}]


def test_import_does_not_pull_torch() -> None:
    code = "import sys, flowsteer.llm; assert 'torch' not in sys.modules; "
    code += "assert 'transformers' not in sys.modules; print('ok')"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "ok"


def test_concurrent_calls_are_batched_and_equal_unbatched_greedy(model_dir: Path) -> None:
    single = TransformersBackend(str(model_dir), max_batch_size=1, batch_wait_ms=0)
    batched = TransformersBackend(str(model_dir), max_batch_size=8, batch_wait_ms=50)
    assert isinstance(batched, LLMBackend)

    async def one_by_one() -> list[Completion]:
        return [await single.complete(chat(p), temperature=0, max_tokens=12) for p in PROMPTS]

    async def together() -> list[Completion]:
        calls = (batched.complete(chat(p), temperature=0, max_tokens=12) for p in PROMPTS)
        return list(await asyncio.gather(*calls))

    reference = asyncio.run(one_by_one())
    outs = asyncio.run(together())
    assert single.generate_calls == len(PROMPTS)
    assert batched.generate_calls < len(PROMPTS) and max(batched.batch_sizes) > 1
    assert [o.error for o in outs] == [r.error for r in reference]
    assert [o.text for o in outs] == [r.text for r in reference]
    assert [o.usage for o in outs] == [r.usage for r in reference]
    assert all(r.ok for r in reference), reference
    assert len({r.text for r in reference}) == len(PROMPTS)
    # prompt tokens are the unpadded lengths, so they differ across the batch
    assert len({o.usage.prompt_tokens for o in outs}) == len(PROMPTS)
    s = batched.stats
    assert s.calls == s.requests == len(PROMPTS)
    assert s.completion_tokens == sum(o.usage.completion_tokens for o in outs) > 0
    single.close()
    batched.close()


def test_max_tokens_finish_reason_and_different_params_not_mixed(model_dir: Path) -> None:
    backend = TransformersBackend(str(model_dir), max_batch_size=8, batch_wait_ms=50)

    async def go() -> list[Completion]:
        return list(
            await asyncio.gather(
                backend.complete(chat("a"), temperature=0, max_tokens=3),
                backend.complete(chat("b"), temperature=0, max_tokens=3),
                backend.complete(chat("c"), temperature=0, max_tokens=5),
            )
        )

    outs = asyncio.run(go())
    assert sorted(backend.batch_sizes) == [1, 2]
    for out, limit in zip(outs, (3, 3, 5), strict=True):
        assert out.usage.completion_tokens <= limit
        if out.finish_reason == "length":
            assert out.usage.completion_tokens == limit
    backend.close()


def test_event_loop_stays_responsive_while_generating(model_dir: Path) -> None:
    backend = TransformersBackend(str(model_dir), max_batch_size=4, batch_wait_ms=0)

    async def go() -> tuple[Completion, int]:
        ticks = 0
        task = asyncio.create_task(backend.complete(chat("tick"), temperature=0, max_tokens=64))
        while not task.done():
            ticks += 1
            await asyncio.sleep(0.001)
        return task.result(), ticks

    out, ticks = asyncio.run(go())
    assert out.latency_s > 0 and ticks >= 3
    backend.close()


def test_bad_input_and_long_prompt_are_error_values(model_dir: Path) -> None:
    backend = TransformersBackend(str(model_dir), max_prompt_tokens=40)

    async def go() -> list[Completion]:
        return [
            await backend.complete(chat("x"), beams=2),
            await backend.complete([{"role": "user"}]),
            await backend.complete(chat("word " * 100), temperature=0),
            await backend.complete(chat("ok"), temperature=0, max_tokens=2),
        ]

    bad_key, bad_msg, too_long, fine = asyncio.run(go())
    assert "beams" in bad_key.error and "content" in bad_msg.error
    assert "max_prompt_tokens=40" in too_long.error
    assert fine.usage.prompt_tokens > 0
    assert backend.stats.failures >= 3
    backend.close()
    assert "closed" in asyncio.run(backend.complete(chat("late"))).error


def test_sequential_event_loops_and_pickle(model_dir: Path) -> None:
    backend = TransformersBackend(str(model_dir), batch_wait_ms=1)
    first = asyncio.run(backend.complete(chat("same"), temperature=0, max_tokens=6))
    second = asyncio.run(backend.complete(chat("same"), temperature=0, max_tokens=6))
    assert (first.text, first.error) == (second.text, second.error)
    clone = pickle.loads(pickle.dumps(backend))
    assert len(pickle.dumps(backend)) < 2000  # config only; weights reload from model_path
    third = asyncio.run(clone.complete(chat("same"), temperature=0, max_tokens=6))
    assert (third.text, third.error) == (first.text, first.error)
    backend.close()
    clone.close()


def test_sampling_with_seed_is_reproducible(model_dir: Path) -> None:
    backend = TransformersBackend(str(model_dir), batch_wait_ms=0)

    def sample() -> str:
        out = asyncio.run(backend.complete(chat("s"), temperature=1.0, max_tokens=8, seed=3))
        return out.text

    assert sample() == sample()
    backend.close()


def test_constructor_errors_are_clear(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="not a directory"):
        TransformersBackend(str(tmp_path / "missing"))
    with pytest.raises(ValueError, match="cannot load"):
        TransformersBackend(str(tmp_path))
    with pytest.raises(ValueError, match="dtype"):
        TransformersBackend(str(tmp_path), dtype="float8")  # type: ignore[arg-type]


def test_cancelled_caller_does_not_break_the_worker(model_dir: Path) -> None:
    backend = TransformersBackend(str(model_dir), batch_wait_ms=0)

    async def go() -> Completion:
        with pytest.raises(asyncio.TimeoutError):
            await asyncio.wait_for(backend.complete(chat("slow"), max_tokens=200), 0.001)
        start = time.monotonic()
        out = await backend.complete(chat("next"), temperature=0, max_tokens=4)
        assert time.monotonic() - start < 30
        return out

    assert asyncio.run(go()).usage.prompt_tokens > 0
    backend.close()


def test_batches_never_exceed_max_batch_size(model_dir: Path) -> None:
    backend = TransformersBackend(str(model_dir), max_batch_size=2, batch_wait_ms=200)

    async def go() -> list[Completion]:
        calls = (backend.complete(chat(p), temperature=0, max_tokens=2) for p in PROMPTS)
        return list(await asyncio.gather(*calls, backend.complete(chat("x"), max_tokens=2)))

    outs = asyncio.run(go())
    assert len(outs) == 5 and sum(backend.batch_sizes) == 5
    assert max(backend.batch_sizes) == 2
    backend.close()


def test_stop_string_ends_the_text_before_it(model_dir: Path) -> None:
    backend = TransformersBackend(str(model_dir), batch_wait_ms=0)
    prompt = chat(PROMPTS[1])
    full = asyncio.run(backend.complete(prompt, temperature=0, max_tokens=12))
    assert full.ok, full.error
    words = full.text.split()
    assert len(words) >= 3, full.text
    stop = words[len(words) // 2]
    cut = asyncio.run(backend.complete(prompt, temperature=0, max_tokens=12, stop=[stop]))
    assert cut.ok, cut.error
    assert cut.text == full.text[: full.text.find(stop)]
    assert stop not in cut.text and cut.finish_reason == "stop"
    backend.close()
