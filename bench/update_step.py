"""One CWRPO update step, as the trainer ran it before and as it runs now, side by side.

The workload of a single-turn GRPO step (the shape of the TRL comparison): 32 sequences of a
24-token prompt and a 64-token completion (loss mask on the completion), one optimizer step on
one minibatch, AdamW. Two variants on the same seeded batch and model:

* ``before``: the old-policy scoring pass (a no-grad forward over the buffer), then the step,
  with the LM head and log-softmax over every real token;
* ``now``: what `CWRPOModule` does for this exactly-on-policy step: no scoring pass (the step's
  detached log-probs are the old ones) and the head only at loss-mask positions.

Models: ``tiny`` (the `flowsteer tiny-model` shape, width 64, 2 layers) and ``small`` (width 256,
4 layers), both with the tiny tokenizer's vocabulary, and ``qwen-vocab`` (the tiny body under a
151,936-token head, where the head dominates). Time: median of ``--repeats`` steps after one
warm-up, ``--threads`` threads; the last column is before / now.

    python bench/update_step.py [--threads 1] [--repeats 5]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from flowsteer.models.tiny import build_tiny_model
from flowsteer.rl.losses import cwrpo_loss
from flowsteer.rl.policy import Policy
from flowsteer.rl.update import score_buffer
from flowsteer.rollout.batch import collate
from flowsteer.rollout.trajectory import Trajectory

MODELS = {
    "tiny": dict(hidden_size=64, num_layers=2),
    "small": dict(hidden_size=256, num_layers=4, intermediate_size=512),
    "qwen-vocab": dict(hidden_size=64, num_layers=2, vocab_size=151_936),
}
ROWS, PROMPT, COMPLETION = 32, 24, 64


def batch(vocab: int):
    generator = torch.Generator().manual_seed(0)
    trajectories = []
    for i in range(ROWS):
        ids = torch.randint(10, vocab, (PROMPT + COMPLETION,), generator=generator).tolist()
        mask = [0] * PROMPT + [1] * COMPLETION
        trajectories.append(Trajectory(ids, mask, [0.0] * len(ids), float(i % 2), group_id=i // 8))
    advantages = torch.tensor([1.0 if i % 2 else -1.0 for i in range(ROWS)])
    return collate(trajectories, advantages, 0)


def step(policy: Policy, optimizer, data, *, before: bool) -> None:
    if before:
        data = score_buffer(policy, data, ROWS, reference=False)
    out = policy.token_logprobs(
        data.input_ids,
        data.attention_mask,
        with_entropy=True,
        score_mask=None if before else data.loss_mask,
    )
    old = data.old_logprobs if before else out.logprobs.detach()
    result = cwrpo_loss(out.logprobs, old, data.advantages, data.loss_mask, entropy=out.entropy)
    result.loss.backward()
    torch.nn.utils.clip_grad_norm_(policy.trainable_parameters(), 1.0)
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)


def median_ms(policy, optimizer, data, before: bool, repeats: int) -> float:
    step(policy, optimizer, data, before=before)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        step(policy, optimizer, data, before=before)
        times.append(time.perf_counter() - start)
    return 1000 * statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--models", nargs="+", default=list(MODELS))
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(
        f"{ROWS} rows x ({PROMPT} prompt + {COMPLETION} completion) tokens, "
        f"threads {args.threads}, median of {args.repeats} steps (ms)\n"
    )
    print("| model | before | now | before / now |")
    print("|---|---:|---:|---:|")
    with tempfile.TemporaryDirectory() as root:
        for name in args.models:
            path = build_tiny_model(Path(root) / name, seed=0, **MODELS[name])
            torch.manual_seed(0)
            policy = Policy(str(path))
            optimizer = torch.optim.AdamW(policy.trainable_parameters(), lr=1e-3, weight_decay=0)
            data = batch(policy.tokenizer.vocab_size)
            # Interleaved, so drift in the machine's load hits both alike.
            before, now = [], []
            for _ in range(2):
                before.append(median_ms(policy, optimizer, data, True, args.repeats))
                now.append(median_ms(policy, optimizer, data, False, args.repeats))
            b, n = min(before), min(now)
            print(f"| {name} | {b:.0f} | {n:.0f} | {b / n:.2f}x |")


if __name__ == "__main__":
    main()
