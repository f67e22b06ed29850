"""Bad configs fail at start, before any rollout, with one line naming what is wrong."""

from __future__ import annotations

import json
import socket
from pathlib import Path

import pytest

from lightning_modules.cli import main
from tests.lightning.conftest import tiny_config, write_config


def _run(
    tmp_path: Path, config: dict, capsys: pytest.CaptureFixture[str], *extra: str
) -> tuple[int, str]:
    path = write_config(tmp_path / "bad.yaml", config)
    try:
        code = main(["fit", "--config", str(path), *extra])
    except SystemExit as exit_:  # jsonargparse reports parse errors by exiting
        code = exit_.code
    assert not (tmp_path / "run" / "checkpoints").exists(), "training started"
    return code, capsys.readouterr().err


def test_unknown_key(tmp_path: Path, tiny_policy: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = tiny_config(tmp_path / "run", tiny_policy)
    config["model"]["clip_epsilon"] = 0.2
    code, err = _run(tmp_path, config, capsys)
    assert code == 2 and "clip_epsilon" in err


def test_wrong_type(tmp_path: Path, tiny_policy: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = tiny_config(tmp_path / "run", tiny_policy)
    config["model"]["minibatch_size"] = "eight"
    code, err = _run(tmp_path, config, capsys)
    assert code == 2 and "minibatch_size" in err


def test_missing_model_directory(
    tmp_path: Path, tiny_policy: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tiny_config(tmp_path / "run", tmp_path / "no-such-model")
    code, err = _run(tmp_path, config, capsys)
    assert code == 2 and "no-such-model" in err


def test_task_file_with_a_bad_record(
    tmp_path: Path, tiny_policy: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "gsm8k_bad.jsonl"
    records = [{"question": "1 + 1?", "answer": "#### 2"}, {"question": "2 + 2?"}]
    bad.write_text("\n".join(json.dumps(r) for r in records) + "\n")
    config = tiny_config(tmp_path / "run", tiny_policy)
    config["data"]["train"][0]["path"] = str(bad)
    code, err = _run(tmp_path, config, capsys)
    assert code == 2
    assert "gsm8k_bad.jsonl" in err and "record 1" in err and "'answer'" in err


def test_unreachable_backend(
    tmp_path: Path, tiny_policy: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with socket.socket() as sock:  # a port nothing listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    executor = {
        "class_path": "flowsteer.canvas.executor.WorkflowExecutor",
        "init_args": {
            "backend": {
                "class_path": "flowsteer.llm.OpenAIBackend",
                "init_args": {
                    "model": "m",
                    "base_url": f"http://127.0.0.1:{port}/v1",
                    "api_key_env": None,
                    "max_retries": 0,
                    "timeout_s": 2.0,
                },
            }
        },
    }
    code, err = _run(
        tmp_path, tiny_config(tmp_path / "run", tiny_policy, executor=executor), capsys
    )
    assert code == 2 and f"127.0.0.1:{port}" in err and "does not answer" in err


def test_live_policy_engine_is_refused_under_fsdp2() -> None:
    from types import SimpleNamespace

    from lightning.pytorch.strategies import ModelParallelStrategy

    from callbacks import RolloutCallback

    trainer = SimpleNamespace(strategy=ModelParallelStrategy())
    module = SimpleNamespace(policy=SimpleNamespace(model=None, tokenizer=None))
    with pytest.raises(ValueError, match="VLLMEngine"):
        RolloutCallback().setup(trainer, module, "fit")
