"""The loopback server itself, through the real `openai` client and raw sockets."""

from __future__ import annotations

import asyncio
import json
import socket
import time
import urllib.error
import urllib.request

import openai
import pytest

from flowsteer.llm import Fault, LoopbackServer

pytestmark = pytest.mark.timeout(60)


def client(server: LoopbackServer, **kw: object) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(base_url=server.base_url, api_key="k", max_retries=0, **kw)


def chat(server: LoopbackServer, content: str = "hello world", **extra: object):
    async def go():
        async with client(server) as c:
            return await c.chat.completions.create(
                model="m", messages=[{"role": "user", "content": content}], **extra
            )

    return asyncio.run(go())


def test_binds_loopback_on_a_free_port_and_stops() -> None:
    with LoopbackServer() as a, LoopbackServer() as b:
        assert a.host == "127.0.0.1" and a.port > 0 and a.port != b.port
        assert a.base_url == f"http://127.0.0.1:{a.port}/v1"
        port = a.port
    with pytest.raises(OSError), socket.create_connection(("127.0.0.1", port), timeout=1):
        pass


def test_models_endpoint_and_unknown_route() -> None:
    with LoopbackServer(model="tiny") as server:

        async def go():
            async with client(server) as c:
                return [m.id async for m in c.models.list()]

        assert asyncio.run(go()) == ["tiny"]
        with pytest.raises(urllib.error.HTTPError) as err:
            urllib.request.urlopen(f"{server.base_url}/nothing", timeout=2)
        assert err.value.code == 404
        err.value.close()


def test_default_echo_usage_and_recording() -> None:
    with LoopbackServer() as server:
        out = chat(server, "three little words", temperature=0.2)
        assert out.choices[0].message.content == "echo: three little words"
        assert out.usage.prompt_tokens == 3 and out.usage.completion_tokens == 4
        assert out.usage.total_tokens == 7
        (req,) = server.chat_requests
        assert req.index == 0 and req.method == "POST" and req.path == "/v1/chat/completions"
        assert req.body["temperature"] == 0.2 and req.headers["authorization"] == "Bearer k"


def test_scripted_list_cycles_and_callable_sees_request() -> None:
    with LoopbackServer(replies=["a", "b"]) as server:
        assert [chat(server).choices[0].message.content for _ in range(3)] == ["a", "b", "a"]
    seen = []

    def reply(request: dict) -> str:
        seen.append(request)
        return request["messages"][-1]["content"].upper()

    with LoopbackServer(replies=reply) as server:
        assert chat(server, "shout").choices[0].message.content == "SHOUT"
        assert seen[0]["model"] == "m"


def test_reply_callable_may_return_a_fault() -> None:
    with (
        LoopbackServer(replies=lambda req: Fault.http(503)) as server,
        pytest.raises(openai.InternalServerError),
    ):
        chat(server)


def test_stop_and_max_tokens_are_honoured() -> None:
    with LoopbackServer(replies=["one two three END four"]) as server:
        out = chat(server, stop=["END"])
        assert out.choices[0].message.content == "one two three "
        assert out.choices[0].finish_reason == "stop"
        out = chat(server, max_tokens=2)
        assert out.choices[0].message.content == "one two"
        assert out.choices[0].finish_reason == "length"


def test_faults_through_the_real_client() -> None:
    faults = [
        Fault.http(500),
        Fault.http(429, retry_after_s=1.5),
        Fault.drop(),
        Fault.malformed(),
        Fault.empty(),
        Fault.hang(5),
    ]
    with LoopbackServer(replies=["fine"], faults=faults) as server:
        with pytest.raises(openai.InternalServerError):
            chat(server)
        with pytest.raises(openai.RateLimitError) as err:
            chat(server)
        assert err.value.response.headers["retry-after"] == "1.5"
        with pytest.raises(openai.APIConnectionError):
            chat(server)
        with pytest.raises(json.JSONDecodeError):
            chat(server)
        assert chat(server).choices[0].message.content == ""

        async def timed_out():
            async with client(server, timeout=0.2) as c:
                await c.chat.completions.create(
                    model="m", messages=[{"role": "user", "content": "x"}]
                )

        with pytest.raises(openai.APITimeoutError):
            asyncio.run(timed_out())
        assert chat(server).choices[0].message.content == "fine"  # faults past the list: none


def test_bad_request_body_is_400() -> None:
    with LoopbackServer() as server:
        req = urllib.request.Request(
            f"{server.base_url}/chat/completions", data=b"{nope", method="POST"
        )
        with pytest.raises(urllib.error.HTTPError) as err:
            urllib.request.urlopen(req, timeout=2)
        assert err.value.code == 400
        err.value.close()


def test_serves_200_slow_requests_concurrently() -> None:
    """200 requests delayed 50 ms each must overlap, not queue (the executor benchmark)."""
    with LoopbackServer(latency_s=0.05) as server:

        async def go() -> float:
            async with client(server) as c:
                msgs = [{"role": "user", "content": "x"}]
                await c.chat.completions.create(model="m", messages=msgs)
                start = time.monotonic()
                await asyncio.gather(
                    *(c.chat.completions.create(model="m", messages=msgs) for _ in range(200))
                )
                return time.monotonic() - start

        elapsed = asyncio.run(go())
        assert server.max_in_flight >= 100
        assert elapsed < 2.0, f"200 x 50 ms took {elapsed:.2f} s; serialised would be 10 s"
        assert len(server.chat_requests) == 201


def test_constructor_rejects_bad_scripts() -> None:
    with pytest.raises(TypeError):
        LoopbackServer(replies="just one string")  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        LoopbackServer(replies=[])
