"""Forward+backward of one micro-batch (2 × 4,096 tokens) of the Qwen3-8B shape on one GPU, outside
the trainer: LoRA r=64 and full fine-tuning, with and without gradient checkpointing, and a
profiler table of the LoRA step's kernels. `gpu_check.py`'s update figures are measured against
these: what lies between them is the update loop's.

    python bench/profile_step.py          # one CUDA GPU, about two minutes
    python bench/profile_step.py --cpu    # the tiny shape on CPU (checks the code path)
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from gpu_check import QWEN3_8B, TINY, build_policy_dir

from flowsteer.rl.policy import LoraSettings, Policy


def _sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def fwd_bwd(policy: Policy, ids: torch.Tensor) -> None:
    """One micro-batch: every token scored, the summed log-probs back-propagated."""
    mask = torch.ones_like(ids)
    policy.token_logprobs(ids, mask, score_mask=mask).logprobs.sum().backward()


def measure(model_dir: Path, lora: bool, ckpt: bool, device: str, length: int, profile: bool):
    policy = Policy(
        str(model_dir),
        dtype="float32" if device == "cpu" else "bfloat16",
        gradient_checkpointing=ckpt,
        lora=LoraSettings(r=64, alpha=64, dropout=0.0) if lora else None,
        attn_implementation="sdpa",
    ).to(device)
    policy.train()
    ids = torch.randint(8, 1000, (2, length), device=device)
    try:
        for _ in range(2):  # warm-up: kernels chosen, allocator grown
            fwd_bwd(policy, ids)
        _sync(device)
        started, repeats = time.perf_counter(), 3
        for _ in range(repeats):
            fwd_bwd(policy, ids)
        _sync(device)
        seconds = (time.perf_counter() - started) / repeats
        print(
            f"lora={lora} checkpointing={ckpt}: {seconds * 1000:.0f} ms per 2x{length} "
            f"forward+backward, {2 * length / seconds:.0f} tokens/s",
            flush=True,
        )
        if profile:
            activities = [torch.profiler.ProfilerActivity.CPU]
            if device == "cuda":
                activities.append(torch.profiler.ProfilerActivity.CUDA)
            with torch.profiler.profile(activities=activities) as prof:
                fwd_bwd(policy, ids)
                _sync(device)
            key = "self_cuda_time_total" if device == "cuda" else "self_cpu_time_total"
            print(prof.key_averages().table(sort_by=key, row_limit=18), flush=True)
    except torch.OutOfMemoryError:
        print(f"lora={lora} checkpointing={ckpt}: out of memory", flush=True)
    del policy
    if device == "cuda":
        torch.cuda.empty_cache()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cpu", action="store_true", help="tiny shape on CPU")
    args = parser.parse_args()
    device = "cpu" if args.cpu else "cuda"
    if device == "cuda" and not torch.cuda.is_available():
        sys.exit("bench/profile_step.py needs a CUDA GPU (use --cpu to check the code path)")
    shape, length = (TINY, 128) if args.cpu else (QWEN3_8B, 4096)
    scratch = None if args.cpu else "/dev/shm"
    with tempfile.TemporaryDirectory(dir=scratch) as tmp:
        model_dir = build_policy_dir(shape, Path(tmp), device)
        for lora in (True, False):
            for ckpt in (True, False):
                measure(model_dir, lora, ckpt, device, length, profile=lora and ckpt)


if __name__ == "__main__":
    main()
