"""`VLLMServerEngine` in a 2-rank gloo world (DDP-like and FSDP2-sharded LoRA), no vLLM.

Two real HTTP servers on 127.0.0.1 follow vLLM 0.32's LoRA endpoints (``/v1/load_lora_adapter``
refuses a name already loaded, ``/v1/unload_lora_adapter``, ``/v1/models``): each rank has its own
replica (``base_urls`` per rank), rank 0 alone writes and pushes to both, and all ranks agree on
the adapter name, or fail together.
"""

from __future__ import annotations

import asyncio
import json
import socket
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import torch
import torch.multiprocessing as mp

from flowsteer.models.tiny import build_tiny_model
from flowsteer.rl.policy import LoraSettings, Policy
from flowsteer.rollout.vllm_server_engine import VLLMServerEngine

BASE = "tiny"


class _LoraServer(BaseHTTPRequestHandler):
    def log_message(self, *args) -> None:
        pass

    def do_GET(self) -> None:
        models = [{"id": BASE}] + [{"id": name} for name in self.server.loaded]
        self._send(200, {"object": "list", "data": models})

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        state = self.server
        with state.lock:
            state.calls.append((self.path, body))
            if self.path == "/v1/load_lora_adapter":
                name = body["lora_name"]
                if name in state.loaded:  # vLLM's answer to a second load of a name
                    return self._send(
                        400, {"error": f"The lora adapter '{name}' has already been loaded."}
                    )
                if not (Path(body["lora_path"]) / "adapter_config.json").is_file():
                    return self._send(400, {"error": f"no adapter at {body['lora_path']}"})
                state.loaded.append(name)
                return self._send(200, {})
            if self.path == "/v1/unload_lora_adapter":
                if body["lora_name"] not in state.loaded:
                    return self._send(404, {"error": "not found"})
                state.loaded.remove(body["lora_name"])
                return self._send(200, {})
        choice = {
            "token_ids": [1],
            "logprobs": {"token_logprobs": [-0.1]},
            "finish_reason": "length",
        }
        self._send(200, {"choices": [choice]})

    def _send(self, status: int, payload: dict) -> None:
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


@pytest.fixture()
def servers():
    running = []
    for _ in range(2):
        httpd = ThreadingHTTPServer(("127.0.0.1", 0), _LoraServer)
        httpd.daemon_threads = True
        httpd.calls, httpd.loaded, httpd.lock = [], [], threading.Lock()
        threading.Thread(target=httpd.serve_forever, daemon=True).start()
        running.append(httpd)
    yield running
    for httpd in running:
        httpd.shutdown()
        httpd.server_close()


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory):
    return build_tiny_model(tmp_path_factory.mktemp("tiny"))


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _rank(rank: int, port: int, model: str, urls: list, out: str, shard: bool) -> None:
    import torch.distributed as dist

    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=2)
    try:
        torch.manual_seed(0)
        policy = Policy(model, lora=LoraSettings(r=4, alpha=8, dropout=0.0))
        with torch.no_grad():
            for name, p in policy.named_parameters():
                if "lora_B" in name:
                    p.copy_(torch.randn(p.shape, generator=torch.Generator().manual_seed(1)))
        if shard:
            from torch.distributed.device_mesh import init_device_mesh
            from torch.distributed.fsdp import fully_shard

            fully_shard(policy, mesh=init_device_mesh("cpu", (2,)))
        result: dict = {"rank": rank}
        engine = VLLMServerEngine(urls, served_model_name=BASE, adapter_dir=Path(out) / "adapters")
        result["urls"] = engine.base_urls
        try:
            for version in (1, 2):
                asyncio.run(engine.sync_weights(policy, version))
            result["name"] = engine.model_name
            engine.begin_run()  # a second fit against the same servers
            asyncio.run(engine.sync_weights(policy, 1))
            result["second"] = engine.model_name
        except RuntimeError as error:
            result["error"] = str(error)
        Path(out, f"rank{rank}.json").write_text(json.dumps(result))
    finally:
        dist.destroy_process_group()


def _run(tmp_path, model, urls, shard: bool) -> list[dict]:
    ctx = mp.get_context("spawn")
    port = _port()
    procs = [
        ctx.Process(target=_rank, args=(r, port, str(model), urls, str(tmp_path), shard))
        for r in range(2)
    ]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout=180)
    for p in procs:
        if p.is_alive():
            p.kill()
            pytest.fail("a rank hung (killed after 180 s)")
    assert [p.exitcode for p in procs] == [0, 0]
    return [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in range(2)]


def _url(httpd) -> str:
    return f"http://127.0.0.1:{httpd.server_address[1]}"


@pytest.mark.slow
@pytest.mark.parametrize("shard", [False, True], ids=["ddp", "fsdp2"])
def test_rank0_pushes_once_to_every_replica_and_all_ranks_agree(servers, tiny_dir, tmp_path, shard):
    from peft import PeftModel
    from safetensors.torch import load_file
    from transformers import AutoModelForCausalLM

    results = _run(tmp_path, tiny_dir, [[_url(servers[0])], [_url(servers[1])]], shard)
    assert [r["urls"] for r in results] == [[_url(servers[0])], [_url(servers[1])]]
    assert "error" not in results[0], results[0]
    assert results[0]["name"] == results[1]["name"]
    assert results[0]["second"] == results[1]["second"]
    first, second = results[0]["name"], results[0]["second"]
    prefix, run, version = first.rsplit("-", 2)
    assert version == "v2" and second.endswith("-v1") and run not in second
    for httpd in servers:
        loads = [b["lora_name"] for path, b in httpd.calls if path == "/v1/load_lora_adapter"]
        unloads = [b["lora_name"] for path, b in httpd.calls if path == "/v1/unload_lora_adapter"]
        assert loads == [f"{prefix}-{run}-v1", first, second]  # once each, never per rank
        assert unloads == [f"{prefix}-{run}-v1"]
    # The written adapter holds the full (gathered) LoRA weights, not rank 0's shards.
    saved = load_file(tmp_path / "adapters" / first / "adapter_model.safetensors")
    torch.manual_seed(0)
    reference = Policy(str(tiny_dir), lora=LoraSettings(r=4, alpha=8, dropout=0.0))
    expected = {k: v for k, v in reference.model.state_dict().items() if "lora_A" in k}
    assert len(saved) == 2 * len(expected)
    saved_a = [t for k, t in saved.items() if "lora_A" in k]
    assert all(any(torch.equal(t, e) for e in expected.values()) for t in saved_a)
    PeftModel.from_pretrained(
        AutoModelForCausalLM.from_pretrained(tiny_dir), tmp_path / "adapters" / first
    )


@pytest.mark.slow
def test_a_failed_push_fails_every_rank(servers, tiny_dir, tmp_path):
    dead = f"http://127.0.0.1:{_port()}"
    results = _run(tmp_path, tiny_dir, [[_url(servers[0])], [dead]], shard=False)
    for result in results:
        assert f"weight push to {dead} failed" in result["error"]
    assert "name" not in results[1]


def test_base_urls_per_rank_settings(tmp_path):
    engine = VLLMServerEngine(
        "http://127.0.0.1:80{rank}0/v1", served_model_name=BASE, adapter_dir=tmp_path
    )
    assert engine.urls_for(1, 2) == ["http://127.0.0.1:8010"]
    assert engine.base_urls == ["http://127.0.0.1:8000"]
    lists = VLLMServerEngine(
        [["http://a:1"], ["http://b:1", "http://c:1"]], served_model_name=BASE, adapter_dir=tmp_path
    )
    assert lists.urls_for(1, 2) == ["http://b:1", "http://c:1"]
    with pytest.raises(ValueError, match="2 lists of replicas but the run has 3 ranks"):
        lists.urls_for(0, 3)
    with pytest.raises(ValueError, match=r"base_urls\[1\]"):
        VLLMServerEngine(
            [["http://a:1"], ["ftp://b"]], served_model_name=BASE, adapter_dir=tmp_path
        )
    with pytest.raises(ValueError, match="mix of URLs and lists"):
        VLLMServerEngine(
            ["http://a:1", ["http://b:1"]], served_model_name=BASE, adapter_dir=tmp_path
        )


if __name__ == "__main__":  # pragma: no cover
    sys.exit(pytest.main([__file__]))
