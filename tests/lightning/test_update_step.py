"""`CWRPOModule.training_step` in real fits on the tiny policy, against plain PyTorch: every loss
aggregation trains with micro-batches summing to the whole minibatch, statistics do not depend
on the micro-batch size, a step with no trained token changes nothing, the logged lr is the one
the step used, and a run resumed past its planned end trains at the new schedule's rate."""

from __future__ import annotations

import copy
import shutil
from pathlib import Path

import lightning as L
import pytest
import torch
from lightning.pytorch.loggers import Logger

from flowsteer.rl.policy import Policy
from flowsteer.rl.schedules import WarmupCosine
from flowsteer.rollout.batch import collate
from flowsteer.rollout.trajectory import Trajectory
from lightning_modules.cli import main
from lightning_modules.cwrpo_module import CWRPOModule
from tests.lightning.conftest import tiny_config, write_config
from tests.lightning.test_fit import scalars

# (conversation length, sampled tokens at its end, advantage): ragged lengths, one row with no
# sampled token, so token, sequence and padded-length weighting all differ.
ROWS = [(10, 4, 1.0), (30, 20, -0.5), (18, 0, 0.7), (26, 9, 2.0)]


class HandBuffer(L.Callback):
    """Every iteration trains on the same seeded ``ROWS``; only the rows in ``keep`` train."""

    def __init__(self, keep: list[int] | None = None) -> None:
        self.keep = list(range(len(ROWS))) if keep is None else keep

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        pl_module.rollout_size = len(ROWS)

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        trajectories = [
            Trajectory(ids, [0] * (n - k) + [1] * k, [0.0] * n, reward=0.0, group_id=i)
            for i, (ids, (n, k, _)) in enumerate(zip(_ids(pl_module.policy), ROWS, strict=True))
        ]
        advantages = torch.tensor([a for _, _, a in ROWS])
        pad = pl_module.policy.tokenizer.pad_token_id
        pl_module.set_rollout(collate(trajectories, advantages, pad), self.keep)


class Recorder(L.Callback):
    """Weights, optimizer state and lr before and after every training step."""

    def __init__(self) -> None:
        self.steps: list[dict] = []

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        self._before = _snapshot(trainer, pl_module)

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self.steps.append({"before": self._before, "after": _snapshot(trainer, pl_module)})


class MemoryLogger(Logger):
    """Keeps every logged ``train/`` row (one per training step) in memory."""

    def __init__(self) -> None:
        super().__init__()
        self.rows: list[dict[str, float]] = []

    @property
    def name(self) -> str:
        return "memory"

    @property
    def version(self) -> int:
        return 0

    def log_hyperparams(self, *args, **kwargs) -> None:
        pass

    def log_metrics(self, metrics: dict[str, float], step: int | None = None) -> None:
        if "train/tokens" in metrics:
            self.rows.append({k: float(v) for k, v in metrics.items() if k.startswith("train/")})


def _ids(policy: Policy) -> list[list[int]]:
    generator = torch.Generator().manual_seed(0)
    vocab = policy.tokenizer.vocab_size
    return [torch.randint(10, vocab, (n,), generator=generator).tolist() for n, _, _ in ROWS]


def _snapshot(trainer: L.Trainer, module: CWRPOModule) -> dict:
    optimizer = trainer.optimizers[0]
    return {
        "weights": {n: p.detach().clone() for n, p in module.policy.named_parameters()},
        "optimizer": copy.deepcopy(optimizer.state_dict()),
        "lr": optimizer.param_groups[0]["lr"],
    }


def _fit(tiny_policy: Path, *, epochs: int, keep=None, scheduler=None, **module_args):
    torch.manual_seed(0)
    module = CWRPOModule(Policy(str(tiny_policy)), scheduler=scheduler, **module_args)
    recorder, logger = Recorder(), MemoryLogger()
    trainer = L.Trainer(
        accelerator="cpu",
        devices=1,
        max_epochs=epochs,
        logger=logger,
        log_every_n_steps=1,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        limit_val_batches=0,
        callbacks=[HandBuffer(keep), recorder],
    )
    trainer.fit(module)
    return module, recorder.steps, logger.rows


def _row_terms(policy: Policy, rows: list[int]) -> list[torch.Tensor]:
    """Per row: ``−A · ρ`` of its sampled tokens, ρ = exp(log π − log π.detach())."""
    all_ids = _ids(policy)
    terms = []
    for i in rows:
        n, k, advantage = ROWS[i]
        ids = torch.tensor([all_ids[i]])
        logits = policy.model(input_ids=ids).logits[0].float()  # [n, V]
        # position t scores token t given tokens < t
        logprobs = torch.log_softmax(logits[:-1], -1).gather(1, ids[0, 1:, None])[:, 0]  # [n-1]
        sampled = logprobs[n - 1 - k :]  # [k]
        terms.append(-advantage * torch.exp(sampled - sampled.detach()))
    return terms


def _plain(policy: Policy, rows: list[int], loss_agg: str) -> torch.Tensor:
    terms = _row_terms(policy, rows)
    with_tokens = [t for t in terms if t.numel()]
    if loss_agg == "token-mean":
        return sum(t.sum() for t in terms) / sum(t.numel() for t in terms)
    if loss_agg == "seq-mean-token-mean":
        return sum(t.mean() for t in with_tokens) / len(with_tokens)
    width = max(ROWS[i][0] for i in rows)  # the minibatch's padded length
    return sum(t.sum() / width for t in with_tokens) / len(with_tokens)


AGGS = ["token-mean", "seq-mean-token-mean", "seq-mean-token-sum-norm"]
STATS = [
    "train/loss",
    "train/pg_loss",
    "train/ratio_max",
    "train/ratio_mean",
    "train/clip_frac_low",
    "train/clip_frac_high",
    "train/approx_kl_old",
    "train/entropy",
    "train/tokens",
]


@pytest.mark.parametrize("loss_agg", AGGS)
def test_each_aggregation_trains_and_micro_batches_sum_to_the_minibatch(
    tiny_policy: Path, loss_agg: str
) -> None:
    args = dict(
        optimizer=lambda params: torch.optim.SGD(params, lr=20.0),
        minibatch_size=4,
        ppo_epochs=2,  # the second pass sees ρ ≠ 1: clips, ratio maxima
        max_grad_norm=None,
        loss_agg=loss_agg,
    )
    runs = {micro: _fit(tiny_policy, epochs=1, micro_batch_size=micro, **args) for micro in (1, 4)}

    # The first step against plain PyTorch: SGD moves the weights by −lr · ∇(minibatch loss).
    fresh = Policy(str(tiny_policy))
    loss = _plain(fresh, [0, 1, 2, 3], loss_agg)
    loss.backward()
    for micro, (_, steps, rows) in runs.items():
        before, after = steps[0]["before"]["weights"], steps[0]["after"]["weights"]
        for name, param in fresh.named_parameters():
            expected = -20.0 * param.grad if param.grad is not None else torch.zeros_like(param)
            torch.testing.assert_close(
                after[name] - before[name], expected, rtol=1e-3, atol=2e-6, msg=(micro, name)
            )
        assert rows[0]["train/pg_loss"] == pytest.approx(loss.item(), rel=1e-4, abs=1e-6)
        assert rows[0]["train/loss"] == pytest.approx(loss.item(), rel=1e-4, abs=1e-6)
        assert rows[0]["train/ratio_max"] == pytest.approx(1.0, abs=1e-4)

    # Statistics do not depend on the micro-batch size (sums, maxima, token-weighted means).
    (_, _, one), (_, _, whole) = runs[1], runs[4]
    assert len(one) == len(whole) == 2
    for a, b in zip(one, whole, strict=True):
        for name in STATS:
            assert a[name] == pytest.approx(b[name], rel=2e-3, abs=1e-5), name
    assert whole[1]["train/ratio_max"] > 1.05  # the second step has real ratios to compare
    assert whole[1]["train/clip_frac_low"] + whole[1]["train/clip_frac_high"] > 0
    for name, value in runs[1][0].policy.named_parameters():
        other = dict(runs[4][0].policy.named_parameters())[name]
        torch.testing.assert_close(value, other, rtol=1e-3, atol=1e-5, msg=name)


def test_a_step_without_trained_tokens_changes_nothing(tiny_policy: Path) -> None:
    # One kept row of four, one row per minibatch: each pass has one real and three empty steps.
    lr = 1e-2
    module, steps, rows = _fit(
        tiny_policy,
        epochs=2,
        keep=[1],
        optimizer=lambda params: torch.optim.AdamW(params, lr=lr),
        minibatch_size=1,
        micro_batch_size=1,
        max_grad_norm=None,
    )
    assert [r["train/tokens"] for r in rows] == [20.0, 0.0, 0.0, 0.0] * 2
    # Skipped steps log the statistics of no tokens, not a repeat of the last step's values.
    assert [r["train/ratio_mean"] > 0 for r in rows] == [True, False, False, False] * 2
    for step, row in zip(steps, rows, strict=True):
        if row["train/tokens"] == 0:
            before, after = step["before"], step["after"]
            for name, value in before["weights"].items():
                assert torch.equal(value, after["weights"][name]), name
            assert before["optimizer"]["state"].keys() == after["optimizer"]["state"].keys()
            for key, state in before["optimizer"]["state"].items():
                for field, value in state.items():
                    assert torch.equal(value, after["optimizer"]["state"][key][field]), field
    assert module.trainer.global_step == 2  # optimizer steps actually taken

    # A plain AdamW loop over the non-empty minibatches only gives the same weights.
    plain = Policy(str(tiny_policy))
    optimizer = torch.optim.AdamW(plain.parameters(), lr=lr)
    for _ in range(2):
        optimizer.zero_grad()
        _plain(plain, [1], "token-mean").backward()
        optimizer.step()
    trained = dict(module.policy.named_parameters())
    for name, value in plain.named_parameters():
        torch.testing.assert_close(trained[name], value, rtol=1e-4, atol=1e-6, msg=name)


def test_the_logged_lr_is_the_one_the_step_used(tiny_policy: Path) -> None:
    _, steps, rows = _fit(
        tiny_policy,
        epochs=2,
        scheduler=lambda optimizer: WarmupCosine(optimizer, warmup_steps=1, total_steps=3),
        optimizer=lambda params: torch.optim.AdamW(params, lr=1e-3),
        minibatch_size=2,
        micro_batch_size=2,
    )
    used = [step["before"]["lr"] for step in steps]
    assert used == pytest.approx([5e-4, 5e-4, 1e-3, 1e-3])  # warm-up, then the peak
    assert [row["train/lr"] for row in rows] == pytest.approx(used)


def test_resume_past_the_planned_end_trains_at_the_new_schedules_rate(
    tmp_path: Path, tiny_policy: Path
) -> None:
    """The README's recipe: resume with a larger ``max_epochs`` and ``total_steps``."""
    config = tiny_config(tmp_path / "run", tiny_policy, epochs=2)
    config["trainer"]["callbacks"][0] = {
        "class_path": "tests.lightning.fixed_rollout.FixedRollout",
        "init_args": {"rows": 4, "out": str(tmp_path / "weights.pt")},
    }
    config["trainer"]["callbacks"].pop(1)  # no engine to sync
    config["model"]["scheduler"] = {
        "class_path": "flowsteer.rl.schedules.WarmupCosine",
        "init_args": {"warmup_steps": 0, "total_steps": 2},
    }
    path = write_config(tmp_path / "fit.yaml", config)
    assert main(["fit", "--config", str(path)]) == 0
    planned_end = tmp_path / "planned_end.pt"
    shutil.copy(tmp_path / "weights.pt", planned_end)
    last = tmp_path / "run" / "checkpoints" / "last.ckpt"

    extended = ["--trainer.max_epochs", "3", "--model.scheduler.init_args.total_steps", "4"]
    assert main(["fit", "--config", str(path), *extended, "--ckpt_path", str(last)]) == 0

    lrs = [value for _, value in sorted(scalars(tmp_path / "run" / "tb")["train/lr"])]
    assert lrs[:2] == pytest.approx([1e-3, 1e-3])  # iteration 0 of the old schedule (peak)
    # Iteration 2 of the new 4-step cosine: 1e-3 · ½(1 + cos(π · 2/4)) = 5e-4.
    assert lrs[-2:] == pytest.approx([5e-4, 5e-4])
    before, after = torch.load(planned_end), torch.load(tmp_path / "weights.pt")
    assert any(not torch.equal(before[k], after[k]) for k in before)
