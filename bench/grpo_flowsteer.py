"""FlowSteer's side of `vs_trl.py`: the workload through `CWRPOModule` under a Lightning `Trainer`.

A `WorkloadSource` (a `RolloutSource`) fills the module's buffer at every iteration start (sample with
`HFEngine`, decode, reward, group advantages, collate); the module then does what it does for any
task: old-policy scoring when needed, forward+backward, clip, AdamW. One iteration = one optimizer
step. Prints one JSON line with per-step seconds (wall or CPU clock) and rewards.

    python bench/grpo_flowsteer.py --model runs/bench/small --threads 1 [--fixed-length] [--cpu-clock]
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import os
import sys
import time
from collections import defaultdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from grpo_workload import Workload, prompts, reward, run_arguments, step_prompts

EOS_IDS = (0, 2)  # <|endoftext|>, <|im_end|> of the tiny tokenizer


def sampling_params(work: Workload, fixed_length: bool, seed: int):
    """Per-request sampling: fixed length means every completion has exactly max_new_tokens."""
    from flowsteer.rollout.engine import SamplingParams

    names = {f.name for f in dataclasses.fields(SamplingParams)}
    kwargs = {
        "max_tokens": work.max_new_tokens,
        "temperature": 1.0,
        "seed": seed,
        "stop_token_ids": EOS_IDS,
    }
    if fixed_length:
        if "min_tokens" in names:  # EOS suppressed until the last token
            kwargs["min_tokens"] = work.max_new_tokens
        else:  # no min_tokens yet: no stop ids, so EOS may be sampled (and trained on) mid-completion
            kwargs["stop_token_ids"] = ()
    return SamplingParams(**kwargs)


def run(
    model: str,
    threads: int,
    steps: int,
    fixed_length: bool,
    cpu_clock: bool,
    work: Workload,
    bessel: bool = False,
) -> dict:
    """Train `steps` iterations; per-step seconds, gradient norms (before clipping) and rewards.

    bessel: rescale the group-std advantages to TRL's Bessel-corrected std (x sqrt((G-1)/G)), to
    test whether the std convention changes training (item 6 in bench/README.md)."""
    import torch
    from trainer import quiet_trainer

    from callbacks.rollout_source import RolloutSource
    from flowsteer.rl.advantages import compute_advantages
    from flowsteer.rl.policy import Policy
    from flowsteer.rollout.batch import collate
    from flowsteer.rollout.engine import GenerationRequest
    from flowsteer.rollout.hf_engine import HFEngine
    from flowsteer.rollout.runner import request_seed
    from flowsteer.rollout.trajectory import Trajectory
    from lightning_modules.cwrpo_module import CWRPOModule

    torch.set_num_threads(threads)
    torch.manual_seed(work.seed)
    clock = time.process_time if cpu_clock else time.perf_counter
    texts = prompts(work.num_prompts)
    times: dict[int, dict[str, float]] = defaultdict(lambda: defaultdict(float))
    rewards: list[float] = []
    size = work.prompts_per_step * work.group_size
    loop = asyncio.new_event_loop()

    class Timed(CWRPOModule):
        """CWRPOModule unchanged, plus a forward+backward timer."""

        def training_step(self, batch, batch_idx):
            self._t0 = clock()
            return super().training_step(batch, batch_idx)

        def _clip_and_norm(self):
            times[self.current_epoch]["fwdbwd"] += clock() - self._t0
            norm = super()._clip_and_norm()
            times[self.current_epoch]["grad_norm"] = float(norm)
            return norm

    class WorkloadSource(RolloutSource):
        """One prompt batch per iteration, sampled from the live policy and scored by `reward`."""

        def episodes_per_iteration(self, trainer):
            return size

        def setup(self, trainer, pl_module, stage):
            super().setup(trainer, pl_module, stage)
            self.engine = HFEngine(pl_module.policy.model, pl_module.policy.tokenizer)

        def on_train_start(self, trainer, pl_module):
            self.last = clock()

        def on_train_epoch_start(self, trainer, pl_module):
            # The buffer is built here rather than by the base class, so that --bessel can
            # rescale the advantages (TRL's std convention) before they reach the module.
            pl_module.set_rollout(*self._rollout(trainer, pl_module))

        def _rollout(self, trainer, pl_module):
            step = trainer.current_epoch
            tok = pl_module.policy.tokenizer
            chosen = step_prompts(work, step)
            ids = tok(text=[texts[i] for i in chosen])["input_ids"]
            requests = [
                GenerationRequest(
                    ids[g],
                    sampling_params(
                        work,
                        fixed_length,
                        request_seed(work.seed, step * size + g * work.group_size + j, 0),
                    ),
                )
                for g in range(len(chosen))
                for j in range(work.group_size)
            ]
            t0 = clock()
            gens = loop.run_until_complete(self.engine.generate(requests))
            times[step]["gen"] += clock() - t0
            scores = reward(
                tok.batch_decode([g.token_ids for g in gens], skip_special_tokens=True), work.target
            )
            rewards.append(sum(scores) / len(scores))
            trajectories = [
                Trajectory(
                    token_ids=list(req.prompt_ids) + list(gen.token_ids),
                    loss_mask=[0] * len(req.prompt_ids) + [1] * len(gen.token_ids),
                    rollout_logprobs=[0.0] * len(req.prompt_ids) + list(gen.logprobs),
                    reward=r,
                    group_id=k // work.group_size,
                )
                for k, (req, gen, r) in enumerate(zip(requests, gens, scores, strict=True))
            ]
            adv = compute_advantages(
                torch.tensor(scores),
                torch.tensor([t.group_id for t in trajectories]),
                std_scale="group",
            )
            values = (
                adv.values * ((work.group_size - 1) / work.group_size) ** 0.5
                if bessel
                else adv.values
            )
            return collate(trajectories, values, tok.pad_token_id), list(range(size))

        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
            now = clock()
            times[trainer.current_epoch]["step"] = now - self.last
            self.last = now

    policy = Policy(model, dtype="float32")
    module = Timed(
        policy,
        optimizer=lambda params: torch.optim.AdamW(params, lr=work.lr, weight_decay=0.0),
        ppo_epochs=1,
        minibatch_size=size,
        micro_batch_size=size,
        clip_eps_low=work.clip_eps,
        clip_eps_high=work.clip_eps,
        max_grad_norm=work.max_grad_norm,
        seed=work.seed,
    )
    trainer = quiet_trainer(steps, [WorkloadSource()])
    conditions = {
        "weights": str(next(policy.model.parameters()).dtype).removeprefix("torch."),
        "autocast": "no" if trainer.precision in ("32-true", "32") else trainer.precision,
        "gradient_checkpointing": bool(policy.model.is_gradient_checkpointing),
    }
    trainer.fit(module)
    loop.close()
    rows = [dict(times[i]) for i in range(steps)]
    return {"trainer": "flowsteer", "steps": rows, "rewards": rewards, "conditions": conditions}


def main(argv: list[str] | None = None) -> int:
    parser = run_arguments(__doc__.split("\n")[0])
    parser.add_argument(
        "--bessel", action="store_true", help="advantages with TRL's Bessel-corrected std"
    )
    args = parser.parse_args(argv)
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    out = run(
        args.model,
        args.threads,
        args.steps,
        args.fixed_length,
        args.cpu_clock,
        Workload(),
        args.bessel,
    )
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
