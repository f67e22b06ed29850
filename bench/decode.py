"""`HFEngine`'s decoding loop against transformers' ``generate`` on the same batch.

One batch of the `vs_trl.py` workload: 4 prompts x 8 samples, 64 new tokens, temperature 1, the
tiny tokenizer's stop ids {0, 2}, on the `tiny` and `small` benchmark models. ``engine`` is
`HFEngine.generate_sync` (per-row seeded draws, log-probs of every token, rows leaving the batch
as they stop); ``generate`` is ``model.generate(do_sample=True)`` with the same settings, the way
TRL samples on CPU (it returns no log-probs). Two lengths:

* ``fixed``: stop ids held until the 64th token (``min_tokens`` / ``min_new_tokens``), so both
  do exactly 32 x 64 tokens;
* ``free``: stop when a stop id is sampled; ``generate`` keeps running a finished row until the
  last row of the batch ends, the engine drops it (the token counts differ: different draws).

CPU seconds (``time.process_time``), median of ``--repeats`` interleaved calls after a warm-up.

    python bench/decode.py [--models tiny small] [--threads 1] [--repeats 8]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))
from grpo_workload import MODELS, Workload, build_model, prompts  # noqa: E402

STOPS = (0, 2)


def batch(tokenizer, work: Workload, fixed: bool):
    """The requests of one step: prompts 0-3, 8 seeds each."""
    from flowsteer.rollout.engine import GenerationRequest, SamplingParams

    ids = tokenizer(text=prompts(work.num_prompts)[: work.prompts_per_step])["input_ids"]
    return [
        GenerationRequest(
            ids[g],
            SamplingParams(
                max_tokens=work.max_new_tokens,
                seed=1000 + g * work.group_size + j,
                stop_token_ids=STOPS,
                min_tokens=work.max_new_tokens if fixed else 0,
            ),
        )
        for g in range(work.prompts_per_step)
        for j in range(work.group_size)
    ]


def generate_call(model, requests, pad_id: int, fixed: bool, max_new: int):
    """``model.generate`` on the same left-padded batch (TRL's way of sampling on CPU)."""
    from transformers import GenerationConfig

    width = max(len(r.prompt_ids) for r in requests)
    input_ids = torch.full((len(requests), width), pad_id)
    mask = torch.zeros((len(requests), width), dtype=torch.long)
    for row, r in enumerate(requests):
        input_ids[row, width - len(r.prompt_ids) :] = torch.tensor(r.prompt_ids)
        mask[row, width - len(r.prompt_ids) :] = 1
    config = GenerationConfig(
        do_sample=True,
        temperature=1.0,
        top_k=0,
        top_p=1.0,
        max_new_tokens=max_new,
        min_new_tokens=max_new if fixed else 0,
        eos_token_id=list(STOPS),
        pad_token_id=pad_id,
    )

    def call() -> int:
        model.eval()
        with torch.no_grad():
            out = model.generate(input_ids=input_ids, attention_mask=mask, generation_config=config)
        return sum(_length(row, max_new) for row in out[:, width:].tolist())

    return call


def _length(tokens: list[int], max_new: int) -> int:
    """A row's sampled tokens: up to and including its first stop id (then padding)."""
    return next((k + 1 for k, t in enumerate(tokens) if t in STOPS), max_new)


def measure(model_dir: Path, fixed: bool, repeats: int) -> dict[str, float]:
    from flowsteer.rl.policy import Policy
    from flowsteer.rollout.hf_engine import HFEngine

    work = Workload()
    policy = Policy(str(model_dir), dtype="float32")
    requests = batch(policy.tokenizer, work, fixed)
    engine = HFEngine(policy.model, policy.tokenizer)
    hf = generate_call(policy.model, requests, engine.pad_token_id, fixed, work.max_new_tokens)
    ours, theirs, tokens = [], [], {}
    for i in range(repeats + 1):  # the first round warms up
        t0 = time.process_time()
        out = engine.generate_sync(requests)
        t1 = time.process_time()
        tokens["generate"] = hf()
        t2 = time.process_time()
        if i:
            ours.append(t1 - t0)
            theirs.append(t2 - t1)
        tokens["engine"] = sum(len(g.token_ids) for g in out)
    return {
        "engine": statistics.median(ours),
        "generate": statistics.median(theirs),
        "engine_tokens": tokens["engine"],
        "generate_tokens": tokens["generate"],
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--models", nargs="+", default=["tiny", "small"], choices=sorted(MODELS))
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=8)
    parser.add_argument("--model-root", default=None, help="where the models are built")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    root = Path(args.model_root or tempfile.mkdtemp(prefix="decode_bench_"))
    print(
        "| model | length | engine s | generate s | engine/generate | tokens (engine, generate) |"
    )
    print("|---|---|---|---|---|---|")
    for name in args.models:
        model_dir = build_model(name, root)
        for fixed in (True, False):
            r = measure(model_dir, fixed, args.repeats)
            print(
                f"| {name} | {'fixed' if fixed else 'free'} | {r['engine']:.3f} | "
                f"{r['generate']:.3f} | {r['engine'] / r['generate']:.2f}x | "
                f"{r['engine_tokens']}, {r['generate_tokens']} |",
                flush=True,
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
