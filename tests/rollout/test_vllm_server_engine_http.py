"""`VLLMServerEngine`'s HTTP side without vLLM: what it sends, and how failures come back.

These run in the default suite. The server here is a real HTTP server on 127.0.0.1 that answers
in vLLM 0.32's completions wire format (``choices[0].token_ids``, ``logprobs.token_logprobs``,
``finish_reason``) the way the real server does in the `vllm`-marked tests, and misbehaves on
demand: by the requested model name, it hangs, fails with a 500, or answers garbage.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from flowsteer.rollout.engine import GenerationRequest, SamplingParams
from flowsteer.rollout.vllm_server_engine import VLLMServerEngine


class _Handler(BaseHTTPRequestHandler):
    def log_message(self, *args) -> None:  # keep test output clean
        pass

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        self.server.seen.append((self.path, dict(self.headers), body))
        model = body.get("model")
        if model == "hang":  # the client gives up first; nothing is ever answered
            time.sleep(3.0)
            return
        if model == "boom":
            return self._send(500, b'{"error": "engine dead"}')
        if model == "garbage":
            return self._send(200, b"not json")
        n = len(body["prompt"])
        choice = {
            "index": 0,
            "text": "",
            "token_ids": [n, n + 1],
            "logprobs": {
                "token_logprobs": [-0.5, -0.25],
                "tokens": [f"token_id:{n}", f"token_id:{n + 1}"],
            },
            "finish_reason": "stop" if model == "stopper" else "length",
        }
        self._send(200, json.dumps({"choices": [choice]}).encode())

    def _send(self, status: int, payload: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)


@pytest.fixture(scope="module")
def server():
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    httpd.daemon_threads = True
    httpd.seen = []
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield httpd
    httpd.shutdown()
    httpd.server_close()


def _url(httpd) -> str:
    return f"http://127.0.0.1:{httpd.server_address[1]}"


def _engine(urls, model: str, tmp_path, **kwargs) -> VLLMServerEngine:
    return VLLMServerEngine(urls, served_model_name=model, adapter_dir=tmp_path, **kwargs)


def test_sends_token_ids_and_reads_ids_and_logprobs_back(server, tmp_path):
    server.seen.clear()
    engine = _engine(_url(server) + "/v1/", "stopper", tmp_path)
    sampling = SamplingParams(
        max_tokens=7,
        temperature=0.5,
        top_p=0.9,
        top_k=20,
        stop_token_ids=(2,),
        seed=4,
        min_tokens=2,
    )
    out = asyncio.run(engine.generate([GenerationRequest([10, 11, 12], sampling)]))[0]
    assert (out.token_ids, out.logprobs, out.finish_reason, out.error) == (
        [3, 4],
        [-0.5, -0.25],
        "stop",
        None,
    )
    path, _, body = server.seen[-1]
    assert path == "/v1/completions"
    assert body["prompt"] == [10, 11, 12] and body["model"] == "stopper"
    assert (body["max_tokens"], body["temperature"], body["top_p"], body["top_k"]) == (
        7,
        0.5,
        0.9,
        20,
    )
    assert (body["stop_token_ids"], body["seed"], body["ignore_eos"]) == ([2], 4, True)
    assert body["logprobs"] == 0 and body["return_token_ids"] is True
    assert body["min_tokens"] == 2


@pytest.mark.parametrize(
    ("model", "message"),
    [("boom", 'answered 500: {"error": "engine dead"}'), ("garbage", "malformed response")],
)
def test_server_errors_become_aborts(server, tmp_path, model, message):
    out = asyncio.run(
        _engine(_url(server), model, tmp_path).generate([GenerationRequest([1], SamplingParams(2))])
    )
    assert out[0].finish_reason == "abort" and message in out[0].error


def test_a_hanging_server_times_out_instead_of_hanging(server, tmp_path):
    engine = _engine(_url(server), "hang", tmp_path, request_timeout=0.5)
    started = time.monotonic()
    out = asyncio.run(engine.generate([GenerationRequest([1], SamplingParams(2))] * 3))
    assert time.monotonic() - started < 2.5
    assert all(o.finish_reason == "abort" and "no answer within 0.5 s" in o.error for o in out)


def test_api_key_comes_from_the_named_env_var(server, tmp_path, monkeypatch):
    engine = _engine(_url(server), "ok", tmp_path, api_key_env="FLOWSTEER_TEST_VLLM_KEY")
    with pytest.raises(ValueError, match="FLOWSTEER_TEST_VLLM_KEY is unset"):
        asyncio.run(engine.generate([GenerationRequest([1], SamplingParams(2))]))
    monkeypatch.setenv("FLOWSTEER_TEST_VLLM_KEY", "sk-test")
    asyncio.run(engine.generate([GenerationRequest([1], SamplingParams(2))]))
    headers = {k.lower(): v for k, v in server.seen[-1][1].items()}
    assert headers["authorization"] == "Bearer sk-test"
    assert "sk-test" not in repr(vars(engine))


def test_rejects_bad_settings_and_constraints(tmp_path):
    with pytest.raises(ValueError, match="at least one"):
        VLLMServerEngine([], served_model_name="m", adapter_dir=tmp_path)
    with pytest.raises(ValueError, match="'localhost:8000' is not an http"):
        VLLMServerEngine("localhost:8000", served_model_name="m", adapter_dir=tmp_path)
    engine = VLLMServerEngine("http://127.0.0.1:9", served_model_name="m", adapter_dir=tmp_path)
    with pytest.raises(NotImplementedError, match="constraint of request 1"):
        asyncio.run(
            engine.generate(
                [
                    GenerationRequest([1], SamplingParams()),
                    GenerationRequest([1], SamplingParams(), "g"),
                ]
            )
        )


def test_a_grammar_constraint_goes_in_structured_outputs(server, tmp_path):
    """vLLM 0.32's completions request field: ``structured_outputs: {"grammar": <EBNF>}``
    (`vllm/entrypoints/openai/completion/protocol.py`); none without a constraint."""
    from flowsteer.canvas import Canvas
    from flowsteer.rollout.action_grammar import ActionGrammar
    from flowsteer.tasks import Task

    constraint = ActionGrammar().for_canvas(Canvas(Task("t", "toy", "math", "q", "4")), 64)
    server.seen.clear()
    engine = _engine(_url(server), "m", tmp_path)
    requests = [
        GenerationRequest([1, 2], SamplingParams(max_tokens=4), constraint),
        GenerationRequest([1, 2], SamplingParams(max_tokens=4)),
    ]
    asyncio.run(engine.generate(requests))
    bodies = sorted((s[2] for s in server.seen), key=lambda b: "structured_outputs" in b)
    assert "structured_outputs" not in bodies[0]
    assert bodies[1]["structured_outputs"] == {"grammar": constraint.ebnf}
