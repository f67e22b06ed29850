"""Update throughput and MFU of `CWRPOModule` on one CUDA GPU, with a Qwen3-8B-shaped policy.

For a CUDA machine only; never a CI dependency. Nothing is downloaded: the policy is a random-init
Qwen3 with the 8B shape (36 layers, width 4096, MLP 12288, 32/8 heads, vocabulary 151,936) in
bf16, saved once to /dev/shm and loaded through the real `Policy`. The script measures the GPU's
bf16 matmul peak itself, then times update steps through the same module and Lightning with
FSDP2 (`ModelParallelStrategy` + `fully_shard`, one device), with LoRA (r = 64) and with full
fine-tuning, and prints tokens/s and model FLOPs utilisation (target: >= 40 % for full
fine-tuning). Model FLOPs per trained token: 6·N for full fine-tuning, 4·N for LoRA (frozen
weights get no weight gradient), plus the attention term; the recomputation of gradient
checkpointing is not counted (it is hardware work, not model work).

Then the colocated topology of configs/paper.yaml on the same GPU: an in-process `VLLMEngine`
(vLLM must be installed) rolls out, the LoRA update runs through FSDP2 next to it, the weights
are pushed back; once with sleep mode (KV cache freed during the update) and once without:
rollout tokens/s, update tokens/s, MFU and peak device memory of each.

    python bench/gpu_check.py --json          # under 10 minutes on one H100/H200
    python bench/gpu_check.py --cpu-smoke     # the update code path on a tiny shape, on CPU
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import json
import random
import shutil
import sys
import tempfile
import time
from pathlib import Path

import lightning as L
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from trainer import Buffer, _NoData, make_buffer

from flowsteer.models.tiny import build_tokenizer
from flowsteer.rl.policy import LoraSettings, Policy
from lightning_modules.cwrpo_module import CWRPOModule

QWEN3_8B = {
    "hidden_size": 4096,
    "intermediate_size": 12288,
    "num_hidden_layers": 36,
    "num_attention_heads": 32,
    "num_key_value_heads": 8,
    "head_dim": 128,
    "vocab_size": 151936,
}
TINY = {
    "hidden_size": 64,
    "intermediate_size": 128,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
    "head_dim": 16,
    "vocab_size": 1024,
}


def matmul_peak_tflops(device: str, n: int = 8192, iters: int = 50) -> float:
    """Measured bf16 matmul throughput of this device (the MFU denominator)."""
    dtype = torch.bfloat16 if device == "cuda" else torch.float32
    a, b = (
        torch.randn(n, n, device=device, dtype=dtype),
        torch.randn(n, n, device=device, dtype=dtype),
    )
    for _ in range(3):
        a @ b
    _sync(device)
    started = time.perf_counter()
    for _ in range(iters):
        a @ b
    _sync(device)
    return 2 * n**3 * iters / (time.perf_counter() - started) / 1e12


def _sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def _scratch_dir() -> Path | None:
    """/dev/shm when it can hold the 8B checkpoint (16 GB in bf16) twice over, else the disk."""
    shm = Path("/dev/shm")
    if shm.is_dir() and shutil.disk_usage(shm).free > 40 * 2**30:
        return shm
    return None


def build_policy_dir(shape: dict, root: Path, device: str) -> Path:
    from transformers import Qwen3Config, Qwen3ForCausalLM

    tokenizer = build_tokenizer(1024)
    config = Qwen3Config(
        **shape,
        max_position_embeddings=16384,
        tie_word_embeddings=False,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    dtype = torch.bfloat16 if device == "cuda" else torch.float32
    with torch.device(device):
        model = Qwen3ForCausalLM(config).to(dtype)
    out = root / "policy"
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    del model
    if device == "cuda":
        torch.cuda.empty_cache()
    return out


def run(
    model_dir: Path, lora: bool, args: argparse.Namespace, device: str
) -> tuple[float, int, int]:
    policy = Policy(
        str(model_dir),
        dtype="bfloat16" if device == "cuda" else "float32",
        gradient_checkpointing=True,
        lora=LoraSettings(r=64, alpha=64, dropout=0.0) if lora else None,
        attn_implementation="sdpa",
    )
    n_params = sum(p.numel() for name, p in policy.model.named_parameters() if "lora_" not in name)
    module = CWRPOModule(
        policy,
        optimizer=lambda p: torch.optim.AdamW(p, lr=1e-5, fused=device == "cuda"),
        minibatch_size=args.minibatch,
        micro_batch_size=args.micro,
        log_entropy=False,
    )
    batch = make_buffer(args.rows, args.length, 1000, seed=0)
    buffer = Buffer(batch)
    strategy = "auto"
    if device == "cuda":
        from lightning.pytorch.strategies import ModelParallelStrategy

        strategy = ModelParallelStrategy(data_parallel_size=1, tensor_parallel_size=1)
    trainer = L.Trainer(
        accelerator="gpu" if device == "cuda" else "cpu",
        devices=1,
        strategy=strategy,
        max_epochs=args.iterations,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        limit_val_batches=0,
        callbacks=[buffer],
    )
    trainer.fit(module, datamodule=_NoData())
    del module, policy, trainer
    if device == "cuda":
        torch.cuda.empty_cache()
    return buffer.seconds, buffer.tokens, n_params


def device_used_gib() -> float:
    free, total = torch.cuda.mem_get_info()
    return (total - free) / 2**30


def colocated(model_dir: Path, sleep_mode: bool, args: argparse.Namespace, peak: float) -> dict:
    """Rollout on an in-process vLLM, FSDP2 LoRA update beside it, weight push; one GPU."""
    from flowsteer.rollout.engine import GenerationRequest, SamplingParams
    from flowsteer.rollout.vllm_engine import VLLMEngine

    engine = VLLMEngine(
        str(model_dir),
        dtype="bfloat16",
        max_model_len=args.length + args.rollout_tokens,
        gpu_memory_utilization=0.35,
        max_num_seqs=args.rollouts,
        sleep_mode=sleep_mode,
    )
    engine.start()
    rng = random.Random(0)
    requests = [
        GenerationRequest(
            [rng.randrange(8, 1000) for _ in range(args.length // 2)],
            SamplingParams(max_tokens=args.rollout_tokens, temperature=1.0, seed=i),
        )
        for i in range(args.rollouts)
    ]
    torch.cuda.reset_peak_memory_stats()
    started = time.perf_counter()
    generations = asyncio.run(engine.generate(requests))
    rollout_s = time.perf_counter() - started
    sampled = sum(len(g.token_ids) for g in generations)
    awake = device_used_gib()
    engine.sleep()
    asleep = device_used_gib()
    seconds, tokens, n = run(model_dir, True, args, "cuda")
    update_peak = torch.cuda.max_memory_allocated() / 2**30
    per_token = 4 * n + 6 * QWEN3_8B["num_hidden_layers"] * args.length * QWEN3_8B["hidden_size"]
    tflops = per_token * tokens / seconds / 1e12
    result = {
        "sleep_mode": sleep_mode,
        "rollout_tokens_per_s": sampled / rollout_s,
        "update_tokens_per_s": tokens / seconds,
        "update_tflops": tflops,
        "mfu_pct": 100 * tflops / peak,
        "device_used_gib_after_rollout": awake,
        "device_used_gib_during_update_start": asleep,
        "update_peak_allocated_gib": update_peak,
        "device_peak_gib_estimate": asleep + update_peak,
        **{f"memory/{k}": v for k, v in engine.memory.items()},
    }
    del engine
    torch.cuda.empty_cache()
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=16)
    parser.add_argument("--length", type=int, default=4096)
    parser.add_argument("--minibatch", type=int, default=8)
    parser.add_argument("--micro", type=int, default=2)
    parser.add_argument("--iterations", type=int, default=2)
    parser.add_argument("--rollouts", type=int, default=64, help="colocated: requests")
    parser.add_argument("--rollout-tokens", type=int, default=512, help="colocated: per request")
    parser.add_argument("--no-colocated", action="store_true", help="skip the vLLM + FSDP2 runs")
    parser.add_argument("--json", action="store_true", help="print one JSON object instead")
    parser.add_argument(
        "--cpu-smoke", action="store_true", help="tiny shape on CPU (checks the code path)"
    )
    args = parser.parse_args()
    device = "cpu" if args.cpu_smoke else "cuda"
    if device == "cuda" and not torch.cuda.is_available():
        sys.exit(
            "bench/gpu_check.py needs a CUDA GPU (use --cpu-smoke to check the code path on CPU)"
        )
    shape = TINY if args.cpu_smoke else QWEN3_8B
    if args.cpu_smoke:
        args.rows, args.length, args.micro, args.iterations = 8, 128, 2, 1
    peak = matmul_peak_tflops(device, n=512 if args.cpu_smoke else 8192)
    root = _scratch_dir() if not args.cpu_smoke else None
    with tempfile.TemporaryDirectory(dir=root) as tmp:
        model_dir = build_policy_dir(shape, Path(tmp), device)
        rows = []
        for lora in (True, False):
            seconds, tokens, n = run(model_dir, lora, args, device)
            # Attention: 2 matmuls of T·d per layer forward, ×3 with the backward (causal: half).
            attn = 6 * shape["num_hidden_layers"] * args.length * shape["hidden_size"]
            per_token = (4 if lora else 6) * n + attn
            tflops = per_token * tokens / seconds / 1e12
            rows.append(
                ("LoRA r=64" if lora else "full", tokens / seconds, tflops, 100 * tflops / peak)
            )
        colocated_runs: list[dict] = []
        skipped = None
        if device == "cuda" and not args.no_colocated:
            if importlib.util.find_spec("vllm") is None:
                skipped = "vLLM is not installed: the colocated runs were skipped"
            else:
                # Each in a fresh process would be cleaner; vLLM frees its memory on deletion.
                for sleep_mode in (True, False):
                    colocated_runs.append(colocated(model_dir, sleep_mode, args, peak))
    name = torch.cuda.get_device_name() if device == "cuda" else "cpu"
    if args.json:
        print(
            json.dumps(
                {
                    "device": name,
                    "matmul_peak_tflops": peak,
                    "update": [
                        {"mode": m, "tokens_per_s": r, "tflops": t, "mfu_pct": u}
                        for m, r, t, u in rows
                    ],
                    "colocated": colocated_runs,
                    "colocated_skipped": skipped,
                }
            )
        )
        return
    print(f"device: {name}; measured matmul peak {peak:.1f} TFLOP/s")
    print(f"{'update':<10} {'tokens/s':>10} {'TFLOP/s':>8} {'MFU %':>6}")
    for mode, rate, tflops, mfu in rows:
        print(f"{mode:<10} {rate:>10.0f} {tflops:>8.1f} {mfu:>6.1f}")
    for result in colocated_runs:
        print(json.dumps(result))
    if skipped:
        print(skipped)


if __name__ == "__main__":
    main()
