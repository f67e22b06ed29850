"""Fixtures for the evaluation tests: a tiny policy, a LoRA adapter on it, a small SQuAD v2 file,
and the command line of a small real `flowsteer eval` run (ScriptedBackend as the backend)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
EXAMPLES = REPO / "flowsteer" / "examples" / "data"
SCRIPTED = "flowsteer.llm.scripted.ScriptedBackend"
# One reply for every backend call: right for the first GSM8K sample (18), wrong elsewhere, so
# the accuracies are not all zero and not all one.
REPLY = "Half of it is nine, so 18.\n#### 18"


def backend_args(latency_s: float = 0.0) -> str:
    return json.dumps({"script": [REPLY], "when_exhausted": "repeat_last", "latency_s": latency_s})


@pytest.fixture(scope="session")
def tiny_policy(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from flowsteer.models.tiny import build_tiny_model

    return build_tiny_model(tmp_path_factory.mktemp("tiny") / "policy")


@pytest.fixture(scope="session")
def tiny_adapter(tiny_policy: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A LoRA adapter on the tiny policy with non-zero weights (so it differs from the base)."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_pretrained(tiny_policy)
    peft = get_peft_model(
        model,
        LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"], init_lora_weights=False),
    )
    out = tmp_path_factory.mktemp("adapter") / "lora"
    peft.save_pretrained(out)
    return out


@pytest.fixture(scope="session")
def squad_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Two SQuAD v2 records in the native (HF flat) schema."""
    rows = [
        {"id": "q1", "title": "T", "context": "Ada Lovelace wrote the first program.",
         "question": "Who wrote the first program?",
         "answers": {"text": ["Ada Lovelace"], "answer_start": [0]}},
        {"id": "q2", "title": "T", "context": "Paris is the capital of France.",
         "question": "What is the capital of France?",
         "answers": {"text": ["Paris"], "answer_start": [0]}},
    ]  # fmt: skip
    path = tmp_path_factory.mktemp("qa") / "squad_v2.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def data_args(squad: Path) -> list[str]:
    return [
        "--data", f"gsm8k={EXAMPLES / 'gsm8k_sample.jsonl'}",
        "--data", f"humaneval={EXAMPLES / 'humaneval_sample.jsonl'}",
        "--data", f"squad_v2={squad}",
    ]  # fmt: skip


def eval_args(
    policy: Path, squad: Path, out: Path, *extra: str, latency_s: float = 0.0, limit: int = 2
) -> list[str]:
    return [
        "eval", "--model", str(policy), *data_args(squad), "--limit", str(limit),
        "--max-turns", "2", "--max-new-tokens", "8", "--baseline-max-tokens", "16",
        "--backend", SCRIPTED, "--backend-args", backend_args(latency_s),
        "--executor-args", json.dumps({"sandbox_timeout_s": 5.0, "programmer_retries": 0}),
        "--out", str(out), *extra,
    ]  # fmt: skip


@pytest.fixture(scope="session")
def report_run(tiny_policy: Path, tiny_adapter: Path, squad_file: Path, tmp_path_factory) -> Path:
    """One small real evaluation with every baseline (the adapter makes `untrained` apply)."""
    from lightning_modules.cli import main

    out = tmp_path_factory.mktemp("eval") / "report"
    assert main(eval_args(tiny_policy, squad_file, out, "--adapter", str(tiny_adapter))) == 0
    return out
