"""OpenAIBackend through the real `openai` client against a real HTTP server on 127.0.0.1.

Each injected fault is checked by what the server actually received (how many requests, when)
and by the error value the backend returned, never by mocking the client.
"""

from __future__ import annotations

import asyncio
import copy
import email.utils
import itertools
import pickle
import time

import pytest

from flowsteer.llm import Completion, Fault, LoopbackServer, OpenAIBackend

pytestmark = pytest.mark.timeout(60)

HI = [{"role": "user", "content": "what is two plus two"}]
TRANSPORT = {"name": "httpx"}


@pytest.fixture(autouse=True, params=["httpx", "aiohttp"])
def transport(request: pytest.FixtureRequest) -> str:
    """Every test runs on both HTTP transports: they map failures to different exceptions."""
    if request.param == "aiohttp":
        pytest.importorskip("aiohttp")
    TRANSPORT["name"] = request.param
    return request.param


def make(server: LoopbackServer, **overrides: object) -> OpenAIBackend:
    kwargs: dict[str, object] = dict(
        model="loopback",
        base_url=server.base_url,
        api_key_env=None,
        timeout_s=2.0,
        max_retries=3,
        backoff_base_s=0.01,
        backoff_max_s=0.05,
        seed=0,
        http_transport=TRANSPORT["name"],
    )
    kwargs.update(overrides)
    return OpenAIBackend(**kwargs)  # type: ignore[arg-type]


def complete(backend: OpenAIBackend, messages=HI, **sampling: object) -> Completion:
    return asyncio.run(backend.complete(messages, **sampling))


def test_success_returns_text_usage_and_forwards_sampling() -> None:
    with LoopbackServer(replies=["the answer is 4"]) as server:
        backend = make(server)
        out = complete(backend, temperature=0.0, max_tokens=50, top_p=0.9, stop=["END"], seed=7)
        assert out.ok and out.error is None
        assert out.text == "the answer is 4"
        assert out.usage.prompt_tokens == 5 and out.usage.completion_tokens == 4
        assert out.finish_reason == "stop" and out.attempts == 1 and out.latency_s > 0
        (req,) = server.chat_requests
        assert req.body["model"] == "loopback" and req.body["messages"] == HI
        assert req.body["temperature"] == 0.0 and req.body["max_tokens"] == 50
        assert req.body["top_p"] == 0.9 and req.body["stop"] == ["END"] and req.body["seed"] == 7


def test_defaults_fill_unset_sampling_and_stats_accumulate() -> None:
    with LoopbackServer(replies=["one two three"]) as server:
        backend = make(server, temperature=0.3, max_tokens=2)

        async def three() -> list[Completion]:
            return list(await asyncio.gather(*(backend.complete(HI) for _ in range(3))))

        outs = asyncio.run(three())
        assert all(o.text == "one two" and o.finish_reason == "length" for o in outs)
        assert all(r.body["temperature"] == 0.3 for r in server.chat_requests)
        s = backend.stats
        assert (s.calls, s.requests, s.retries, s.failures) == (3, 3, 0, 0)
        assert (s.prompt_tokens, s.completion_tokens) == (15, 6)


def test_latency_within_timeout_succeeds() -> None:
    with LoopbackServer(faults=[Fault.latency(0.3)]) as server:
        out = complete(make(server, timeout_s=2.0))
        assert out.ok and out.attempts == 1 and out.latency_s >= 0.3
        assert len(server.chat_requests) == 1


def test_500_then_success_is_retried() -> None:
    with LoopbackServer(replies=["ok now"], faults=[Fault.http(500), Fault.http(503)]) as server:
        backend = make(server)
        out = complete(backend)
        assert out.ok and out.text == "ok now" and out.attempts == 3
        assert len(server.chat_requests) == 3
        assert backend.stats.retries == 2 and backend.stats.failures == 0


def test_429_honours_retry_after() -> None:
    with LoopbackServer(faults=[Fault.http(429, retry_after_s=0.4)]) as server:
        backend = make(server, backoff_max_s=0.01)
        out = complete(backend)
        assert out.ok and out.attempts == 2
        first, second = server.chat_requests
        assert second.received_at - first.received_at >= 0.38


def test_retry_after_is_capped() -> None:
    with LoopbackServer(faults=[Fault.http(429, retry_after_s=30)]) as server:
        out = complete(make(server, retry_after_max_s=0.1))
        assert out.ok and out.attempts == 2
        first, second = server.chat_requests
        assert 0.09 <= second.received_at - first.received_at < 2.0


def test_dropped_connection_is_retried_and_reported_as_such() -> None:
    with LoopbackServer(faults=[Fault.drop(), Fault.drop()]) as server:
        backend = make(server, max_retries=1)
        out = complete(backend)
        assert not out.ok and "connection error" in out.error and "timeout" not in out.error
        assert out.attempts == 2
        assert complete(backend).ok  # the third request is not dropped


def test_timeouts_end_as_error_value_with_bounded_elapsed_time() -> None:
    with LoopbackServer(faults=lambda i, req: Fault.hang(10)) as server:
        backend = make(server, timeout_s=0.3, max_retries=2, backoff_max_s=0.05)
        start = time.monotonic()
        out = complete(backend)
        elapsed = time.monotonic() - start
        assert not out.ok and out.text == "" and "timeout" in out.error
        assert "3 attempts" in out.error and out.attempts == 3
        assert len(server.chat_requests) == 3
        # 3 attempts x 0.3 s + at most 2 x 0.05 s backoff, plus client start-up slack
        assert 0.9 <= elapsed < 0.9 + 0.1 + 1.0
        assert backend.stats.failures == 1 and backend.stats.retries == 2


def test_malformed_json_is_an_error_value_not_retried() -> None:
    with LoopbackServer(faults=[Fault.malformed()]) as server:
        out = complete(make(server))
        assert not out.ok and "malformed response" in out.error
        assert len(server.chat_requests) == 1


def test_empty_content_is_an_error_value() -> None:
    with LoopbackServer(faults=[Fault.empty()]) as server:
        out = complete(make(server))
        assert not out.ok and out.text == "" and "empty content" in out.error
        assert len(server.chat_requests) == 1


@pytest.mark.parametrize("status", [400, 401, 404, 422])
def test_other_4xx_are_not_retried(status: int) -> None:
    with LoopbackServer(faults=[Fault.http(status, message="nope")]) as server:
        out = complete(make(server))
        assert not out.ok and f"HTTP {status}" in out.error and "nope" in out.error
        assert out.attempts == 1 and len(server.chat_requests) == 1


def test_persistent_500_gives_up_after_max_retries() -> None:
    with LoopbackServer(faults=lambda i, req: Fault.http(500)) as server:
        backend = make(server, max_retries=2)
        out = complete(backend)
        assert not out.ok and "HTTP 500" in out.error and out.attempts == 3
        assert len(server.chat_requests) == 3


def test_connection_refused_is_an_error_value() -> None:
    with LoopbackServer() as server:
        url = server.base_url
    backend = OpenAIBackend(
        "m",
        base_url=url,
        api_key_env=None,
        max_retries=1,
        backoff_max_s=0.01,
        http_transport=TRANSPORT["name"],
    )
    out = complete(backend)
    assert not out.ok and "connection error" in out.error and out.attempts == 2
    assert "ConnectionRefusedError" in out.error


def test_concurrency_limit_bounds_in_flight_requests() -> None:
    with LoopbackServer(latency_s=0.1) as server:
        backend = make(server, max_concurrency=4)

        async def many() -> list[Completion]:
            return list(await asyncio.gather(*(backend.complete(HI) for _ in range(20))))

        start = time.monotonic()
        outs = asyncio.run(many())
        elapsed = time.monotonic() - start
        assert all(o.ok for o in outs)
        assert server.max_in_flight == 4
        assert elapsed >= 5 * 0.1  # 20 requests, 4 at a time, 0.1 s each


def test_requests_are_not_serialised() -> None:
    with LoopbackServer(latency_s=0.05) as server:
        backend = make(server, max_concurrency=64)

        async def many() -> list[Completion]:
            await backend.complete(HI)  # warm the client so its set-up is not timed
            start = time.monotonic()
            outs = await asyncio.gather(*(backend.complete(HI) for _ in range(64)))
            return list(outs), time.monotonic() - start

        outs, elapsed = asyncio.run(many())
        assert all(o.ok for o in outs)
        assert server.max_in_flight >= 32
        assert elapsed < 1.6  # serialised would be 3.2 s; max_in_flight above is the real check


def test_usable_across_sequential_event_loops() -> None:
    with LoopbackServer() as server:
        backend = make(server)
        for i in range(3):
            out = complete(backend, [{"role": "user", "content": f"round {i}"}])
            assert out.ok and out.text == f"echo: round {i}"

        async def close_then_use() -> Completion:
            await backend.aclose()
            return await backend.complete(HI)

        assert asyncio.run(close_then_use()).ok
        assert backend.stats.calls == 4 and backend.stats.failures == 0


def test_bad_input_is_an_error_value_and_sends_nothing() -> None:
    with LoopbackServer() as server:
        backend = make(server)
        bad_key = complete(backend, temprature=0.5)
        assert not bad_key.ok and "temprature" in bad_key.error and "temperature" in bad_key.error
        assert not complete(backend, max_tokens=0).ok
        bad_msgs = complete(backend, [{"role": "user", "content": None}])
        assert not bad_msgs.ok and "messages[0]['content']" in bad_msgs.error
        assert not complete(backend, "just a string").ok
        assert server.chat_requests == []
        assert backend.stats.failures == 4


def test_constructor_rejects_bad_config() -> None:
    with pytest.raises(ValueError, match="base_url"):
        OpenAIBackend("m", base_url="localhost:8000", api_key_env=None)
    with pytest.raises(ValueError, match="max_concurrency"):
        OpenAIBackend("m", base_url="http://x/v1", api_key_env=None, max_concurrency=0)
    with pytest.raises(ValueError, match="temperature"):
        OpenAIBackend("m", base_url="http://x/v1", api_key_env=None, temperature=-1)


SECRET = "sk-test-4f8d2c9e1b7a-do-not-leak"


def test_api_key_is_sent_but_never_exposed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FLOWSTEER_TEST_KEY", SECRET)
    faults = [None, Fault.http(401, message=f"invalid key {SECRET}")]
    with LoopbackServer(faults=faults) as server:
        backend = make(server, api_key_env="FLOWSTEER_TEST_KEY", max_retries=0)
        ok = complete(backend)
        failed = complete(backend)
        assert ok.ok
        # the key does reach the server that asked for it...
        assert server.chat_requests[0].headers["authorization"] == f"Bearer {SECRET}"
        # ...but nowhere else
        assert not failed.ok and "HTTP 401" in failed.error and "***" in failed.error
        for text in (repr(backend), str(backend), failed.error, repr(failed), repr(ok)):
            assert SECRET not in text
        assert SECRET.encode() not in pickle.dumps(backend)
        assert SECRET not in repr(vars(copy.deepcopy(backend)))
        clone = pickle.loads(pickle.dumps(backend))
        assert complete(clone).ok  # key re-read from the environment, not from the pickle


def test_no_key_env_does_not_send_openai_api_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", SECRET)
    with LoopbackServer() as server:
        assert complete(make(server, api_key_env=None)).ok
        assert SECRET not in server.chat_requests[0].headers.get("authorization", "")


def test_missing_key_env_fails_construction_then_error_value(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("FLOWSTEER_TEST_KEY", raising=False)
    with pytest.raises(ValueError, match="FLOWSTEER_TEST_KEY"):
        OpenAIBackend("m", base_url="http://127.0.0.1:9/v1", api_key_env="FLOWSTEER_TEST_KEY")
    monkeypatch.setenv("FLOWSTEER_TEST_KEY", SECRET)
    with LoopbackServer() as server:
        backend = make(server, api_key_env="FLOWSTEER_TEST_KEY")
        monkeypatch.delenv("FLOWSTEER_TEST_KEY")
        out = complete(backend)
        assert not out.ok and "FLOWSTEER_TEST_KEY" in out.error
        assert server.chat_requests == []


def test_cancellation_propagates_and_frees_the_slot() -> None:
    with LoopbackServer(faults=[Fault.hang(10)]) as server:
        backend = make(server, max_concurrency=1, timeout_s=5.0)

        async def cancel_then_call() -> Completion:
            with pytest.raises(asyncio.TimeoutError):
                await asyncio.wait_for(backend.complete(HI), 0.2)
            return await asyncio.wait_for(backend.complete(HI), 2.0)

        assert asyncio.run(cancel_then_call()).ok
        assert len(server.chat_requests) == 2


def test_408_is_retried_like_429() -> None:
    with LoopbackServer(faults=[Fault.http(408)]) as server:
        out = complete(make(server))
        assert out.ok and out.attempts == 2
        assert len(server.chat_requests) == 2


def test_backoff_is_jittered_below_its_cap_and_never_skipped() -> None:
    # seed=0 fixes the jitter draws; uncapped, the 5th ceiling would be 0.1 * 2**4 = 1.6 s
    faults = [Fault.http(500)] * 5
    with LoopbackServer(faults=faults) as server:
        backend = make(server, max_retries=5, backoff_base_s=0.1, backoff_max_s=0.1)
        out = complete(backend)
        assert out.ok and out.attempts == 6
        times = [r.received_at for r in server.chat_requests]
        gaps = [b - a for a, b in itertools.pairwise(times)]
        assert max(gaps) < 0.1 + 0.25, gaps  # every wait stays below backoff_max_s
        assert sum(gaps) > 0.15, gaps  # ... and a retry does wait (seed 0 draws ~0.28 s)


def test_error_values_from_the_server_count_as_failures() -> None:
    with LoopbackServer(faults=[Fault.malformed(), Fault.empty(), None]) as server:
        backend = make(server)
        outs = [complete(backend) for _ in range(3)]
        assert [o.ok for o in outs] == [False, False, True]
        s = backend.stats
        assert (s.calls, s.requests, s.failures, s.retries) == (3, 3, 2, 0)


def test_retry_after_header_forms() -> None:
    from flowsteer.llm.openai_backend import _retry_after_s

    assert _retry_after_s({"retry-after-ms": "250", "retry-after": "9"}) == 0.25
    assert _retry_after_s({"retry-after": "1.5"}) == 1.5
    assert _retry_after_s({}) is None
    assert _retry_after_s({"retry-after": "soon"}) is None
    when = email.utils.formatdate(time.time() + 20, usegmt=True)
    assert 15 < _retry_after_s({"retry-after": when}) <= 20
