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


def _set(path: str, value):
    """A config edit: ``path`` is dotted, list items by index (``trainer.callbacks.0.x``)."""

    def edit(config: dict) -> None:
        *parents, last = path.split(".")
        node = config
        for key in parents:
            node = node[int(key)] if isinstance(node, list) else node.setdefault(key, {})
        node[last] = value

    return edit


_ROLLOUT = "trainer.callbacks.0.init_args"
_TRANSFORMERS_BACKEND = {
    "class_path": "flowsteer.canvas.executor.WorkflowExecutor",
    "init_args": {
        "backend": {
            "class_path": "flowsteer.llm.transformers_backend.TransformersBackend",
            "init_args": {"model_path": "/nope"},
        }
    },
}

# The review's named cases and a parse error run by default; the rest of the list is slow.
ESSENTIAL = ("tis_cap", "kl_coef", "TransformersBackend", "trainer.callbacks.group_size")
BAD_SETTINGS = [  # (edit, words the one error line must hold)
    (_set("model.tis_cap", 0.0), ["tis_cap", "> 0", "0.0"]),
    (_set("model.kl_coef", -0.1), ["kl_coef", ">= 0", "-0.1"]),
    (_set("model.clip_eps_low", 1.5), ["clip_eps_low", "(0, 1)", "1.5"]),
    (_set("model.clip_eps_high", 0.0), ["clip_eps_high", "(0, 1)"]),
    (_set("model.ppo_epochs", 0), ["ppo_epochs", ">= 1", "0"]),
    (_set("model.max_grad_norm", 0.0), ["max_grad_norm", "> 0"]),
    (_set(f"{_ROLLOUT}.group_size", 1), ["group_size", ">= 2", "1"]),
    (_set(f"{_ROLLOUT}.temperature", 0.0), ["temperature", "> 0"]),
    (_set(f"{_ROLLOUT}.top_p", 0.0), ["top_p", "(0, 1]"]),
    (_set(f"{_ROLLOUT}.max_new_tokens", 4096), ["max_new_tokens", "max_context_tokens"]),
    (_set(f"{_ROLLOUT}.executor", _TRANSFORMERS_BACKEND), ["TransformersBackend", "/nope"]),
    (_set("trainer.callbacks.1.init_args.tolerance", 0.0), ["tolerance", "> 0"]),
    (_set("trainer.callbacks.2.init_args.every_n_steps", 0), ["every_n_steps", ">= 1"]),
    (_set("data.weights", {"gsm8k": 1.0}), ["weights", "tasks_per_step"]),
    # Refused by the parser (types, Literal choices), nested in unions: one line all the same.
    (_set("model.loss_agg", "sum"), ["model.loss_agg", "token-mean", "sum"]),
    (_set("model.kl_estimator", "k9"), ["model.kl_estimator", "k9"]),
    (_set(f"{_ROLLOUT}.group_size", "four"), ["trainer.callbacks.group_size", "four"]),
    (_set("model.policy.init_args.lora", {"r": "x"}), ["model.policy.lora.r", "int"]),
    (
        _set(
            "model.scheduler",
            {"class_path": "flowsteer.rl.schedules.WarmupCosine", "init_args": {"min_ratio": 2.0}},
        ),
        ["min_ratio", "[0, 1]", "2.0"],
    ),
]


@pytest.mark.parametrize(
    ("edit", "words"),
    [
        pytest.param(
            edit, words, id=words[0], marks=() if words[0] in ESSENTIAL else pytest.mark.slow
        )
        for edit, words in BAD_SETTINGS
    ],
)
def test_bad_setting_fails_at_start_with_one_line(
    tmp_path: Path, tiny_policy: Path, capsys: pytest.CaptureFixture[str], edit, words
) -> None:
    config = tiny_config(tmp_path / "run", tiny_policy)
    edit(config)
    code, err = _run(tmp_path, config, capsys)
    errors = [line for line in err.splitlines() if "error:" in line]
    assert code == 2 and len(errors) == 1, err
    assert all(word in errors[0] for word in words), errors[0]
    assert "Given value" not in err and "Subtypes" not in err, err  # no jsonargparse dump
    from tests.lightning.test_fit import scalars

    assert not [tag for tag in scalars(tmp_path / "run") if tag.startswith("rollout/")]
