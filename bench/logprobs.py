"""Per-token log-probs: `Policy.token_logprobs` (chunked) against the naive full log-softmax.

The model is a tiny Qwen3 body (2 layers, width 64) under a 151,936-token LM head (Qwen3's
vocabulary, tied to the embeddings), so the vocabulary-sized logits dominate memory as they do
for a real policy. Three workloads, each with both variants on the same seeded batch:

* ``no-grad``: old or reference log-probs (inference only);
* ``train, frozen head``: forward + backward with the embeddings/head frozen (LoRA's case);
* ``train, full``: forward + backward with every weight trainable (full fine-tuning).

Memory: every (workload, variant) runs in a fresh subprocess. Its peak is the process's peak
resident set (``ru_maxrss``) once the computation ran, minus its resident set just before
(model and batch already built). torch's CPU allocator takes large blocks straight from mmap and
returns them on free, so RSS follows the tensors actually alive; tracemalloc would not see torch's
allocations at all. Time: the median of ``--repeats`` runs after that first, measured one.

    python bench/logprobs.py [--batch 2] [--seq-len 1024] [--chunk-size 256] [--repeats 3]
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

SEED = 0
VOCAB = 151_936
WORKLOADS = ("no-grad", "train, frozen head", "train, full")


def build_model(out: Path) -> Path:
    """The tiny Qwen3 body with a Qwen3-sized vocabulary, plus the tiny tokenizer."""
    import torch
    from transformers import Qwen3Config, Qwen3ForCausalLM

    from flowsteer.models.tiny import build_tokenizer

    config = Qwen3Config(
        vocab_size=VOCAB,
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        head_dim=16,
        max_position_embeddings=32_768,
        tie_word_embeddings=True,
        bos_token_id=None,
    )
    torch.manual_seed(SEED)
    Qwen3ForCausalLM(config).save_pretrained(out)
    build_tokenizer().save_pretrained(out)
    return out


def _rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * resource.getpagesize()


def child(model_dir: str, workload: str, variant: str, args: argparse.Namespace) -> dict:
    """Run one (workload, variant) in this process; returns its peak-memory growth and time."""
    import torch

    from flowsteer.rl.policy import Policy

    torch.set_num_threads(args.threads)
    policy = Policy(model_dir, logprob_chunk_size=args.chunk_size)
    if workload == "train, frozen head":
        policy.model.get_output_embeddings().requires_grad_(False)  # tied: embeddings too
    gen = torch.Generator().manual_seed(SEED)
    ids = torch.randint(0, VOCAB, (args.batch, args.seq_len), generator=gen)
    mask = torch.ones_like(ids)
    mask[0, args.seq_len // 2 :] = 0  # one right-padded sequence, as a real batch has
    train = workload != "no-grad"

    def naive():
        positions = (mask.cumsum(-1) - 1).clamp(min=0)
        logits = policy.model(input_ids=ids, attention_mask=mask, position_ids=positions).logits
        logp = logits.float().log_softmax(-1)[:, :-1]  # [B, T-1, V]
        return logp.gather(-1, ids[:, 1:, None]).squeeze(-1) * mask[:, 1:]

    def chunked():
        return policy.token_logprobs(ids, mask).logprobs

    fn = naive if variant == "naive" else chunked

    def run():
        policy.model.zero_grad(set_to_none=True)
        with torch.set_grad_enabled(train):
            out = fn()
            if train:
                out.sum().backward()
        return out

    before = _rss_bytes()
    start = time.perf_counter()
    run()
    first = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 - before
    times = []
    for _ in range(args.repeats):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return {"peak_mb": peak / 2**20, "seconds": statistics.median(times) if times else first}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--seq-len", type=int, default=1024)
    parser.add_argument("--chunk-size", type=int, default=256)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--child", nargs=3, metavar=("MODEL_DIR", "WORKLOAD", "VARIANT"))
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(*args.child, args)))
        return

    passthrough = [
        f"--{name}={getattr(args, name.replace('-', '_'))}"
        for name in ("batch", "seq-len", "chunk-size", "repeats", "threads")
    ]
    scored = args.batch * (args.seq_len - 1) - args.seq_len // 2
    print(
        f"batch {args.batch} × {args.seq_len} tokens ({scored} scored), vocabulary {VOCAB:,}, "
        f"chunk {args.chunk_size} tokens, {args.threads} threads, median of {args.repeats}"
    )
    print(
        f"{'workload':<20} {'naive MB':>9} {'chunked MB':>11} {'mem ratio':>10} "
        f"{'naive s':>8} {'chunked s':>10} {'time ratio':>11}"
    )
    with tempfile.TemporaryDirectory() as tmp:
        model_dir = str(build_model(Path(tmp) / "model"))
        for workload in WORKLOADS:
            row = {}
            for variant in ("naive", "chunked"):
                out = subprocess.run(
                    [
                        sys.executable,
                        __file__,
                        "--child",
                        model_dir,
                        workload,
                        variant,
                        *passthrough,
                    ],
                    capture_output=True,
                    text=True,
                    check=False,
                )
                if out.returncode != 0:
                    raise RuntimeError(f"{workload}/{variant} failed:\n{out.stderr[-3000:]}")
                row[variant] = json.loads(out.stdout.strip().splitlines()[-1])
            naive, chunked = row["naive"], row["chunked"]
            print(
                f"{workload:<20} {naive['peak_mb']:>9.0f} {chunked['peak_mb']:>11.0f} "
                f"{chunked['peak_mb'] / naive['peak_mb']:>9.2f}x "
                f"{naive['seconds']:>8.2f} {chunked['seconds']:>10.2f} "
                f"{chunked['seconds'] / naive['seconds']:>10.2f}x"
            )


if __name__ == "__main__":
    main()
