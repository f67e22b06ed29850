"""Training against a real HTTP backend (the loopback server): faults are counted and survived,
and the API key never lands in configs, logs, hyper-parameters or checkpoints."""

from __future__ import annotations

import random
import threading
from pathlib import Path

import pytest
import yaml

from flowsteer.llm import Fault, LoopbackServer
from lightning_modules.cli import main
from tests.lightning.conftest import EXAMPLES, REPO, tiny_config, write_config
from tests.lightning.test_fit import scalars

SECRET = "sk-test-7f3a9c1e5b2d4f60-do-not-leak"


def _config(tmp_path: Path, policy: Path, base_url: str, *, key_env: str | None) -> Path:
    executor = {
        "class_path": "flowsteer.canvas.executor.WorkflowExecutor",
        "init_args": {
            "backend": {
                "class_path": "flowsteer.llm.OpenAIBackend",
                "init_args": {
                    "model": "loopback",
                    "base_url": base_url,
                    "api_key_env": key_env,
                    "timeout_s": 0.5,
                    "max_retries": 1,
                    "backoff_base_s": 0.01,
                    "backoff_max_s": 0.02,
                    "retry_after_max_s": 0.05,
                },
            },
            "node_timeout_s": 20.0,
        },
    }
    config = tiny_config(tmp_path / "run", policy, epochs=2, executor=executor)
    rollout = config["trainer"]["callbacks"][0]["init_args"]
    rollout.update(max_turns=13, max_new_tokens=96, max_context_tokens=8192)
    rollout["engine"] = {
        "class_path": "tests.lightning.scripted_engine.ScriptedEngine",
        "init_args": {
            "model": str(policy),
            "actions_file": str(REPO / "flowsteer/examples/episodes/reference_workflow.jsonl"),
        },
    }
    config["trainer"]["callbacks"][1]["init_args"]["probe_tokens"] = 0  # a script has no weights
    return write_config(tmp_path / "fit.yaml", config)


@pytest.mark.slow
def test_faults_at_30_percent_are_counted_and_training_continues(
    tmp_path: Path, tiny_policy: Path
) -> None:
    rng, lock = random.Random(0), threading.Lock()
    injected: list[int] = []
    kinds = [Fault.http(500), Fault.http(429, retry_after_s=0.01), Fault.drop(), Fault.hang(1.0)]

    def faults(index: int, body: dict) -> Fault | None:
        with lock:
            if index == 0 or rng.random() >= 0.3:  # request 0 is the start-up reachability check
                return None
            injected.append(index)
            return rng.choice(kinds)

    with LoopbackServer(replies=["#### 4"], faults=faults) as server:
        code = main(
            ["fit", "--config", str(_config(tmp_path, tiny_policy, server.base_url, key_env=None))]
        )
        requests = len(server.chat_requests)
    assert code == 0
    logged = scalars(tmp_path / "run" / "tb")
    counted = sum(value for _, value in logged["backend/faults"])
    assert requests > 50 and len(injected) > 10
    assert counted == len(injected)
    # Every fault was either retried or ended a call as a failure; failed calls became errors the
    # policy saw, never answers: all the backend ever answered is "#### 4".
    assert sum(v for _, v in logged["backend/requests"]) == requests - 1


@pytest.mark.slow
def test_api_key_never_written(
    tmp_path: Path,
    tiny_policy: Path,
    monkeypatch: pytest.MonkeyPatch,
    capfd: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("FLOWSTEER_TEST_KEY", SECRET)
    with LoopbackServer(replies=["#### 4"]) as server:
        code = main(
            [
                "fit",
                "--config",
                str(_config(tmp_path, tiny_policy, server.base_url, key_env="FLOWSTEER_TEST_KEY")),
            ]
        )
        sent = [r.headers.get("authorization", "") for r in server.chat_requests]
    assert code == 0
    assert any(SECRET in h for h in sent)  # the key was really used
    written = [p for p in (tmp_path / "run").rglob("*") if p.is_file()]
    assert any(p.name == "config.yaml" for p in written) and any(
        p.suffix == ".ckpt" for p in written
    )
    assert any(p.name == "hparams.yaml" for p in written)
    for path in written:
        assert SECRET.encode() not in path.read_bytes(), path
    out, err = capfd.readouterr()
    assert SECRET not in out and SECRET not in err


@pytest.mark.slow
def test_validation_traffic_is_counted_apart_from_training(
    tmp_path: Path, tiny_policy: Path
) -> None:
    with LoopbackServer(replies=["#### 4"]) as server:
        path = _config(tmp_path, tiny_policy, server.base_url, key_env=None)
        config = yaml.safe_load(path.read_text())
        config["trainer"].update(max_epochs=2, limit_val_batches=1.0, check_val_every_n_epoch=1)
        config["data"]["val"] = [{"source": "gsm8k", "path": str(EXAMPLES / "gsm8k_val.jsonl")}]
        config["data"]["eval_batch_size"] = 2
        config["trainer"]["callbacks"][0]["init_args"]["max_turns"] = 4
        write_config(path, config)
        assert main(["fit", "--config", str(path), "--trainer.limit_val_batches", "1"]) == 0
        requests = len(server.chat_requests)
    logged = scalars(tmp_path / "run")
    train = sum(v for _, v in logged["backend/requests"])
    val = sum(v for _, v in logged["val/backend/requests"])
    assert val > 0 and train > 0
    # Everything but the start-up reachability check, each request counted once, on one side.
    assert train + val == requests - 1
    assert len(logged["val/backend/requests"]) == 2  # one per validation epoch
