"""TRL's side of `vs_trl.py`: the same workload through TRL's `GRPOTrainer` (run in bench/.venv-trl).

Same model directory, prompts, reward, step shape (G x P completions, one optimizer step per
generation, mu = 1), AdamW without weight decay, constant LR, fp32, CPU. Two TRL defaults are
turned off because they change the work itself: `bf16=True` (autocast, also on CPU: bf16 matmuls
in the update and in generation) and `gradient_checkpointing=True` (the backward recomputes the
forward). The run reports its `conditions` and `vs_trl.py` refuses to pair a run whose
conditions differ from FlowSteer's. TRL draws the prompt
order with its own sampler (the prompts are of one length class, so the work per step matches).
Prints one JSON line with per-step seconds (wall or CPU clock) and rewards.

    bench/.venv-trl/bin/python bench/grpo_trl.py --model runs/bench/small --threads 1 [--fixed-length]
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from grpo_workload import Workload, prompts, reward, run_arguments


def run(
    model: str, threads: int, steps: int, fixed_length: bool, cpu_clock: bool, work: Workload
) -> dict:
    import datasets
    import torch
    import transformers
    from transformers import AutoModelForCausalLM, AutoTokenizer, TrainerCallback
    from trl import GRPOConfig, GRPOTrainer

    torch.set_num_threads(threads)
    torch.manual_seed(work.seed)
    transformers.logging.set_verbosity_error()
    datasets.disable_progress_bars()
    clock = time.process_time if cpu_clock else time.perf_counter
    times: dict[int, dict[str, float]] = defaultdict(lambda: defaultdict(float))
    rewards: list[float] = []
    last = {}

    class Timed(GRPOTrainer):
        def _generate_single_turn(self, *a, **k):
            t0 = clock()
            out = super()._generate_single_turn(*a, **k)
            times[self.state.global_step]["gen"] += clock() - t0
            return out

        def _prepare_inputs(self, inputs):
            t0 = clock()
            out = super()._prepare_inputs(inputs)
            times[self.state.global_step]["prepare"] += clock() - t0
            return out

        def training_step(self, model, inputs, num_items_in_batch=None):
            t0 = clock()
            out = super().training_step(model, inputs, num_items_in_batch)
            times[self.state.global_step]["train_step"] += clock() - t0
            return out

    class StepClock(TrainerCallback):
        def on_train_begin(self, args, state, control, **kw):
            last["t"] = clock()

        def on_step_end(self, args, state, control, **kw):
            now = clock()
            times[state.global_step - 1]["step"] = now - last["t"]
            last["t"] = now

    def contains_target(prompts, completions, **kw):
        scores = reward(completions, work.target)
        rewards.append(sum(scores) / len(scores))
        return scores

    tok = AutoTokenizer.from_pretrained(model)
    lm = AutoModelForCausalLM.from_pretrained(model, dtype=torch.float32)
    size = work.prompts_per_step * work.group_size
    cfg = GRPOConfig(
        output_dir=tempfile.mkdtemp(prefix="vs_trl_"),
        seed=work.seed,
        use_cpu=True,
        bf16=False,  # TRL defaults it on, also on CPU (autocast): the workload is fp32
        fp16=False,
        gradient_checkpointing=False,  # TRL's default is on; FlowSteer's Policy default is off
        per_device_train_batch_size=size,
        gradient_accumulation_steps=1,
        steps_per_generation=1,
        num_iterations=1,
        num_generations=work.group_size,
        max_completion_length=work.max_new_tokens,
        temperature=1.0,
        top_p=1.0,
        top_k=0,
        max_steps=steps,
        learning_rate=work.lr,
        lr_scheduler_type="constant",
        weight_decay=0.0,
        optim="adamw_torch",
        max_grad_norm=work.max_grad_norm,
        beta=0.0,
        epsilon=work.clip_eps,
        scale_rewards="group",
        logging_strategy="no",
        report_to="none",
        disable_tqdm=True,
        save_strategy="no",
        dataloader_num_workers=0,
        dataloader_pin_memory=False,
        generation_kwargs={"min_new_tokens": work.max_new_tokens} if fixed_length else None,
    )
    dataset = datasets.Dataset.from_dict({"prompt": prompts(work.num_prompts)})
    trainer = Timed(
        model=lm,
        reward_funcs=[contains_target],
        args=cfg,
        train_dataset=dataset,
        processing_class=tok,
        callbacks=[StepClock()],
    )
    conditions = {
        "weights": str(trainer.model.dtype).removeprefix("torch."),
        "autocast": trainer.accelerator.mixed_precision,
        "gradient_checkpointing": bool(trainer.model.is_gradient_checkpointing),
    }
    trainer.train()
    rows = []
    for i in range(steps):
        r = dict(times[i])
        r["fwdbwd"] = r.get("train_step", 0.0) - r.get("prepare", 0.0)
        rows.append(r)
    return {"trainer": "trl", "steps": rows, "rewards": rewards, "conditions": conditions}


def main(argv: list[str] | None = None) -> int:
    parser = run_arguments(__doc__.split("\n")[0])
    args = parser.parse_args(argv)
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    out = run(args.model, args.threads, args.steps, args.fixed_length, args.cpu_clock, Workload())
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
