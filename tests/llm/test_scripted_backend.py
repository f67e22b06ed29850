"""ScriptedBackend: the stand-in that executor and operator tests rely on."""

from __future__ import annotations

import asyncio
import inspect
import time

import pytest

from flowsteer.llm import Completion, LLMBackend, OpenAIBackend, ScriptedBackend

HI = [{"role": "user", "content": "two plus two"}]


def test_same_signature_as_the_real_backends() -> None:
    scripted = inspect.signature(ScriptedBackend.complete)
    assert scripted == inspect.signature(OpenAIBackend.complete)
    assert isinstance(ScriptedBackend(["x"]), LLMBackend)


def test_list_script_in_order_records_messages_and_usage() -> None:
    backend = ScriptedBackend(["four", "still four"])

    async def go() -> list[Completion]:
        return [await backend.complete(HI, temperature=0.0), await backend.complete(HI)]

    first, second = asyncio.run(go())
    assert (first.text, second.text) == ("four", "still four")
    assert first.ok and first.usage.prompt_tokens == 3 and first.usage.completion_tokens == 1
    assert backend.calls == 2 and backend.seen == [HI, HI]
    assert backend.sampling_seen == [{"temperature": 0.0}, {}]
    third = asyncio.run(backend.complete(HI))
    assert not third.ok and "exhausted" in third.error and backend.stats.failures == 1


@pytest.mark.parametrize(("mode", "expected"), [("cycle", "a"), ("repeat_last", "b")])
def test_exhaustion_modes(mode: str, expected: str) -> None:
    backend = ScriptedBackend(["a", "b"], when_exhausted=mode)  # type: ignore[arg-type]

    async def go() -> list[str]:
        return [(await backend.complete(HI)).text for _ in range(3)]

    assert asyncio.run(go())[-1] == expected


def test_callable_script_injected_errors_and_raising_script() -> None:
    def script(messages):
        if "boom" in messages[-1]["content"]:
            raise RuntimeError("kaboom")
        return messages[-1]["content"][::-1]

    backend = ScriptedBackend(script, errors={1: "HTTP 500: injected"})

    async def go() -> list[Completion]:
        return [
            await backend.complete([{"role": "user", "content": c}])
            for c in ("abc", "abc", "boom", "xyz")
        ]

    outs = asyncio.run(go())
    assert outs[0].text == "cba" and outs[3].text == "zyx"
    assert not outs[1].ok and outs[1].error == "HTTP 500: injected" and outs[1].text == ""
    assert not outs[2].ok and "kaboom" in outs[2].error
    assert backend.stats.failures == 2


def test_completion_replies_pass_through() -> None:
    backend = ScriptedBackend([Completion.failure("empty content"), "fine"])

    async def go() -> list[Completion]:
        return [await backend.complete(HI), await backend.complete(HI)]

    bad, good = asyncio.run(go())
    assert not bad.ok and bad.error == "empty content" and good.text == "fine"


def test_latency_runs_concurrently_and_max_in_flight_is_recorded() -> None:
    backend = ScriptedBackend(["x"], latency_s=0.2, when_exhausted="cycle")

    async def go() -> float:
        start = time.monotonic()
        await asyncio.gather(*(backend.complete(HI) for _ in range(5)))
        return time.monotonic() - start

    elapsed = asyncio.run(go())
    assert backend.max_in_flight == 5 and 0.2 <= elapsed < 0.6


def test_per_call_latency_list() -> None:
    backend = ScriptedBackend(["a", "b", "c"], latency_s=[0.0, 0.25])

    async def go() -> list[float]:
        return [(await backend.complete(HI)).latency_s for _ in range(3)]

    lat = asyncio.run(go())
    assert lat[0] < 0.1 and lat[1] >= 0.25 and lat[2] >= 0.25


def test_bad_input_gives_error_values() -> None:
    backend = ScriptedBackend(["x"], when_exhausted="cycle")
    assert "seed" in asyncio.run(backend.complete(HI, seed="1")).error
    assert "unknown" in asyncio.run(backend.complete(HI, beam_width=2)).error
    assert "role" in asyncio.run(backend.complete([{"role": "bot", "content": "x"}])).error
    with pytest.raises(TypeError):
        ScriptedBackend("one string")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="latency_s"):
        ScriptedBackend(["x"], latency_s=-1)
