"""The update phase through Lightning (`CWRPOModule`) vs a bare-torch loop doing the same work.

Both take the same optimizer steps on the same fixed rollout buffers (a small Qwen3 built from a
config, random token ids, half of every sequence trained on): micro-batches, `cwrpo_loss` with the
global token count, backward, gradient clipping, AdamW. The old-policy scoring is excluded from
both timings; only the optimizer steps are timed. Prints trained tokens per second and the ratio
(target: Lightning >= 0.9 of bare torch).

    python bench/trainer.py            # about two minutes on 2 CPU cores
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import lightning as L
import torch

from flowsteer.models.tiny import build_tiny_model
from flowsteer.rl.losses import cwrpo_loss
from flowsteer.rl.policy import Policy
from flowsteer.rl.update import micro_batches, plan_minibatches, score_buffer
from flowsteer.rollout.batch import RolloutBatch, collate
from flowsteer.rollout.trajectory import Trajectory
from lightning_modules.cwrpo_module import CWRPOModule


def quiet_trainer(max_epochs: int, callbacks: list[L.Callback]) -> L.Trainer:
    """A CPU `Trainer` that only trains: no logger, checkpoints, progress bar, summary or
    validation, so the benchmarks time the loop and nothing around it."""
    return L.Trainer(
        accelerator="cpu",
        devices=1,
        max_epochs=max_epochs,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        limit_val_batches=0,
        callbacks=callbacks,
    )


def make_buffer(rows: int, length: int, vocab: int, seed: int) -> RolloutBatch:
    generator = torch.Generator().manual_seed(seed)
    trajectories = []
    for i in range(rows):
        ids = torch.randint(10, vocab, (length,), generator=generator).tolist()
        mask = [0] * (length // 2) + [1] * (length - length // 2)
        trajectories.append(Trajectory(ids, mask, [-1.0 * m for m in mask], 0.0, group_id=i // 4))
    return collate(trajectories, torch.randn(rows, generator=generator), 0)


class Buffer(L.Callback):
    """Fills the module's buffer with the fixed batch and times the optimizer steps."""

    def __init__(self, batch: RolloutBatch) -> None:
        self.batch, self.seconds, self.tokens, self._t = batch, 0.0, 0, 0.0

    def setup(self, trainer, pl_module, stage):
        pl_module.rollout_size = len(self.batch)

    def on_train_epoch_start(self, trainer, pl_module):
        pl_module.set_rollout(self.batch, list(range(len(self.batch))))

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        if batch_idx == 0:  # the old-policy scoring is done; Lightning's own overhead counts
            self._t = time.perf_counter()
        self.tokens += int(batch.loss_mask.sum())

    def on_train_epoch_end(self, trainer, pl_module):
        self.seconds += time.perf_counter() - self._t


def lightning_run(
    model_dir: Path, batch: RolloutBatch, args: argparse.Namespace
) -> tuple[float, int]:
    torch.manual_seed(0)
    module = CWRPOModule(
        Policy(str(model_dir)),
        optimizer=lambda p: torch.optim.AdamW(p, lr=1e-5),
        minibatch_size=args.minibatch,
        micro_batch_size=args.micro,
        log_entropy=False,
    )
    buffer = Buffer(batch)
    trainer = quiet_trainer(args.iterations, [buffer])
    trainer.fit(module, train_dataloaders=None, datamodule=_NoData())
    return buffer.seconds, buffer.tokens


class _NoData(L.LightningDataModule):
    def train_dataloader(self):
        return self.trainer.lightning_module.train_dataloader()


def bare_run(model_dir: Path, batch: RolloutBatch, args: argparse.Namespace) -> tuple[float, int]:
    torch.manual_seed(0)
    policy = Policy(str(model_dir))
    optimizer = torch.optim.AdamW(policy.trainable_parameters(), lr=1e-5)
    seconds, tokens = 0.0, 0
    for iteration in range(args.iterations):
        policy.eval()
        scored = score_buffer(policy, batch, args.micro, reference=False)
        policy.train()
        plan = plan_minibatches(
            list(range(len(batch))), len(batch), args.minibatch, 1, seed=iteration
        )
        for rows in plan.steps:
            started = time.perf_counter()
            minibatch = scored.select(list(rows))
            num_tokens = minibatch.num_loss_tokens
            for micro in micro_batches(minibatch, args.micro):
                out = policy.token_logprobs(micro.input_ids, micro.attention_mask)
                loss = cwrpo_loss(
                    out.logprobs,
                    micro.old_logprobs,
                    micro.advantages,
                    micro.loss_mask,
                    rollout_logprobs=micro.rollout_logprobs,
                    num_tokens=num_tokens,
                ).loss
                loss.backward()
            torch.nn.utils.clip_grad_norm_(policy.trainable_parameters(), 1.0)
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            seconds += time.perf_counter() - started
            tokens += num_tokens
    return seconds, tokens


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=16)
    parser.add_argument("--length", type=int, default=512)
    parser.add_argument("--minibatch", type=int, default=8)
    parser.add_argument("--micro", type=int, default=4)
    parser.add_argument("--iterations", type=int, default=3)
    parser.add_argument("--hidden", type=int, default=256)
    parser.add_argument("--layers", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        model_dir = build_tiny_model(
            Path(tmp) / "policy",
            hidden_size=args.hidden,
            num_layers=args.layers,
            intermediate_size=4 * args.hidden,
        )
        vocab = Policy(str(model_dir)).tokenizer.vocab_size
        batch = make_buffer(args.rows, args.length, vocab, seed=0)
        bare_run(model_dir, batch, argparse.Namespace(**{**vars(args), "iterations": 1}))  # warm-up
        # Interleaved repeats, best of each: the machine is shared, so take the least disturbed.
        runs: dict[str, list[tuple[float, int]]] = {"bare torch": [], "lightning": []}
        for _ in range(args.repeats):
            runs["bare torch"].append(bare_run(model_dir, batch, args))
            runs["lightning"].append(lightning_run(model_dir, batch, args))
    print(f"{'loop':<12} {'steps s':>8} {'tokens':>8} {'tokens/s':>10}")
    rate = {}
    for name, results in runs.items():
        seconds, tokens = min(results)
        rate[name] = tokens / seconds
        print(f"{name:<12} {seconds:>8.2f} {tokens:>8d} {rate[name]:>10.0f}")
    print(
        f"ratio lightning / bare torch: {rate['lightning'] / rate['bare torch']:.3f} (target >= 0.9)"
    )


if __name__ == "__main__":
    main()
