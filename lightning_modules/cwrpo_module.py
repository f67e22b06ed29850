"""`CWRPOModule`: the policy and the CWRPO update, as a LightningModule.

One RL iteration is one training epoch. The rollout callback fills this module's buffer at
``on_train_epoch_start``; the module then scores the buffer under the current (old) policy once,
and every training step is one optimizer step on one minibatch of it (``ppo_epochs`` passes), so
the clip acts from the second minibatch on. Optimisation is manual: a step accumulates gradients
over micro-batches whose losses are normalised by the minibatch's token count over all ranks
(`cwrpo_loss(num_tokens=…)`), which Lightning's automatic accumulation (a division by the number
of micro-batches) cannot express. The algorithm lives in the core (`flowsteer.rl.losses`,
`flowsteer.rl.update`); this class wires it to Lightning: devices, sharding, logging, checkpoints.
"""

from __future__ import annotations

import io
import random
import time
from collections.abc import Iterator
from typing import Any, Literal, get_args

import lightning as L
import torch
import torch.distributed as dist
from lightning.pytorch.cli import LRSchedulerCallable, OptimizerCallable
from lightning.pytorch.utilities.parsing import AttributeDict
from torchmetrics import MeanMetric

from flowsteer.rl.host_memory import retain_freed_host_memory
from flowsteer.rl.losses import KLEstimator, LossAgg, cwrpo_loss
from flowsteer.rl.policy import Policy
from flowsteer.rl.update import (
    Normalisers,
    StepStats,
    local_counts,
    micro_batches,
    num_minibatches,
    old_is_current,
    plan_minibatches,
    score_buffer,
    trim,
)
from flowsteer.rollout.batch import RolloutBatch
from lightning_modules.buffer import IterationBuffer, MinibatchLoader


class CWRPOModule(L.LightningModule):
    """Holds the policy (LoRA or full) and runs the CWRPO update over each iteration's buffer.

    Args:
        policy: The policy to train; its ``model`` is what the optimizer updates.
        optimizer: Builds the optimizer from the trainable parameters (YAML: ``class_path``).
        scheduler: Builds the LR scheduler; stepped once per RL iteration (paper: cosine with
            10 warm-up iterations).
        ppo_epochs: Passes over the buffer per iteration.
        minibatch_size: Episodes per optimizer step, per rank.
        micro_batch_size: Episodes per forward/backward (gradient accumulation inside a step).
        clip_eps_low: Lower clip ε of the ratio, in (0, 1).
        clip_eps_high: Upper clip ε of the ratio, in (0, 1).
        kl_coef: β of the KL penalty to the reference policy, >= 0 (0: no reference is scored).
        kl_estimator: Per-token KL estimator.
        loss_agg: How token losses are aggregated.
        tis_cap: Truncated importance sampling cap for the engine/trainer mismatch, > 0
            (``None``: off).
        max_grad_norm: Clip the gradient norm to this, > 0 (``None``: measure it, never clip).
        log_entropy: Compute the policy entropy on trained tokens (costs one more vocabulary pass).
        old_logprobs_in_eval: Score the old policy in eval mode (the sampling engine has no
            dropout; `Policy` removes it by default, which makes this moot).
        seed: Seeds each iteration's minibatch order.
        retain_host_memory: On CPU, keep freed host memory in the process for the next step
            (glibc's trim and mmap thresholds, process-wide; see `flowsteer.rl.host_memory`):
            faster steps, and the process holds its peak host memory. False: malloc's defaults.
    """

    def __init__(
        self,
        policy: Policy,
        optimizer: OptimizerCallable = torch.optim.AdamW,
        scheduler: LRSchedulerCallable | None = None,
        ppo_epochs: int = 1,
        minibatch_size: int = 8,
        micro_batch_size: int = 4,
        clip_eps_low: float = 0.2,
        clip_eps_high: float = 0.2,
        kl_coef: float = 0.0,
        kl_estimator: Literal["k1", "k2", "k3"] = "k3",
        loss_agg: Literal[
            "token-mean", "seq-mean-token-mean", "seq-mean-token-sum-norm"
        ] = "token-mean",
        tis_cap: float | None = None,
        max_grad_norm: float | None = 1.0,
        log_entropy: bool = True,
        old_logprobs_in_eval: bool = True,
        seed: int = 0,
        retain_host_memory: bool = True,
    ) -> None:
        super().__init__()
        _check_settings(
            ppo_epochs=ppo_epochs,
            minibatch_size=minibatch_size,
            micro_batch_size=micro_batch_size,
            clip_eps_low=clip_eps_low,
            clip_eps_high=clip_eps_high,
            kl_coef=kl_coef,
            kl_estimator=kl_estimator,
            loss_agg=loss_agg,
            tis_cap=tis_cap,
            max_grad_norm=max_grad_norm,
        )
        if kl_coef > 0 and not policy.has_reference:
            raise ValueError("CWRPOModule: kl_coef > 0 needs a policy built with_reference=True")
        self.save_hyperparameters(ignore=["policy", "optimizer", "scheduler"])
        self.automatic_optimization = False
        self.policy = policy
        self.optimizer_factory = optimizer
        self.scheduler_factory = scheduler
        self.ppo_epochs = ppo_epochs
        self.minibatch_size = minibatch_size
        self.micro_batch_size = micro_batch_size
        self.clip_eps_low = clip_eps_low
        self.clip_eps_high = clip_eps_high
        self.kl_coef = kl_coef
        self.kl_estimator = kl_estimator
        self.loss_agg = loss_agg
        self.tis_cap = tis_cap
        self.max_grad_norm = max_grad_norm
        self.log_entropy = log_entropy
        self.old_logprobs_in_eval = old_logprobs_in_eval
        self.seed = seed
        self.retain_host_memory = retain_host_memory
        # Set by the rollout callback in its `setup` (it knows tasks per rank × group size).
        self.rollout_size: int | None = None
        # Also set there: its sampling temperature, the one source of truth for the temperature
        # every log-prob is taken at (old, current, reference), so they are of the behaviour
        # policy (docs/design.md §5).
        self.logprob_temperature = 1.0
        self.player: Any = None
        self.buffer: IterationBuffer | None = None
        self.loader = MinibatchLoader(self)
        self.eval_accuracy = torch.nn.ModuleDict()
        self._pending_rank_state: dict[str, Any] | None = None
        self._update_started: float | None = None
        self._train_metrics: list[str] = []  # the step statistics logged so far

    @property
    def hparams_initial(self) -> AttributeDict:
        """What loggers record (TensorBoard's hparams): the constructor's settings plus which code
        ran them (``flowsteer_version``, ``git_commit``). Kept out of ``hparams``, which
        checkpoints carry and LightningCLI parses back as model arguments on ``--ckpt_path``."""
        from lightning_modules.provenance import provenance

        return AttributeDict({**super().hparams_initial, **provenance()})

    # -- setup -------------------------------------------------------------------------------

    def configure_model(self) -> None:
        """Under `ModelParallelStrategy`, shard every decoder layer and the root with FSDP2."""
        if self._device_mesh is None:
            return
        from torch.distributed.fsdp import FSDPModule, fully_shard, register_fsdp_forward_method

        mesh = self._device_mesh
        if "tensor_parallel" in (mesh.mesh_dim_names or ()) and mesh["tensor_parallel"].size() > 1:
            raise ValueError(
                "CWRPOModule shards with FSDP2 only: set the ModelParallelStrategy's "
                "data_parallel_size to the number of devices and tensor_parallel_size to 1"
            )
        dp_mesh = mesh["data_parallel"] if "data_parallel" in (mesh.mesh_dim_names or ()) else mesh
        if isinstance(self.policy, FSDPModule):
            return  # already sharded (configure_model runs again for validate/test after fit)
        for layer in _decoder_layers(self.policy.model):
            fully_shard(layer, mesh=dp_mesh)
        fully_shard(self.policy, mesh=dp_mesh)
        # The trainer calls these methods, not `forward`: let them gather the root's shards too.
        register_fsdp_forward_method(self.policy, "token_logprobs")
        register_fsdp_forward_method(self.policy, "reference_logprobs")

    def setup(self, stage: str) -> None:
        if stage == "fit":
            # from_pretrained returns eval mode; train mode here, before Lightning's model summary
            # and its check for modules left in eval mode (on_train_start comes after both).
            self.policy.train()
            if self.retain_host_memory and self.trainer.strategy.root_device.type == "cpu":
                # Activations live in host memory: reuse it rather than fault it in every step.
                retain_freed_host_memory()
        datamodule = getattr(self.trainer, "datamodule", None)
        tasks = []
        if datamodule is not None:
            tasks = list(getattr(datamodule, "val_tasks", [])) + list(
                getattr(datamodule, "test_tasks", [])
            )
        for source in dict.fromkeys(t.source for t in tasks):
            if source not in self.eval_accuracy:
                self.eval_accuracy[source] = MeanMetric()

    def configure_optimizers(self) -> Any:
        optimizer = self.optimizer_factory(self.policy.trainable_parameters())
        if self.scheduler_factory is None:
            return optimizer
        scheduler = self.scheduler_factory(optimizer)
        return {
            "optimizer": optimizer,
            "lr_scheduler": {"scheduler": scheduler, "interval": "epoch"},
        }

    def train_dataloader(self) -> MinibatchLoader:
        if self.rollout_size is None:
            raise ValueError(
                "CWRPOModule: no rollout source in trainer.callbacks, so nothing fills the buffer "
                "each iteration (and the rollout size is unknown). Add a callbacks.RolloutCallback "
                "(episodes on the canvas) or a subclass of callbacks.RolloutSource that "
                "implements episodes_per_iteration(trainer) and play(trainer, pl_module); a "
                "callback of your own that is not a RolloutSource must set "
                "pl_module.rollout_size in setup and call pl_module.set_rollout every iteration"
            )
        return self.loader

    def steps_per_iteration(self) -> int:
        """Optimizer steps per RL iteration (per rank; equal on every rank)."""
        assert self.rollout_size is not None
        return self.ppo_epochs * num_minibatches(self.rollout_size, self.minibatch_size)

    # -- the iteration -----------------------------------------------------------------------

    def set_rollout(self, batch: RolloutBatch, rows: list[int]) -> None:
        """Called by the rollout callback: this iteration's buffer and the rows that train."""
        self.buffer = IterationBuffer(
            batch=batch, rows=list(rows), plan=None, iteration=self.current_epoch
        )

    def start_iteration(self) -> None:
        """Run the epoch-start hooks (rollout, then scoring) when Lightning did not."""
        from lightning.pytorch.trainer import call

        call._call_callback_hooks(self.trainer, "on_train_epoch_start")
        call._call_lightning_module_hook(self.trainer, "on_train_epoch_start")

    def on_train_epoch_start(self) -> None:
        if self.buffer is None:
            raise RuntimeError(
                "CWRPOModule: the rollout callback did not fill the buffer for this iteration"
            )
        if self.buffer.plan is not None:
            return
        started = time.perf_counter()
        was_training = self.policy.training
        if self.old_logprobs_in_eval:
            self.policy.eval()
        batch = self.buffer.batch.to(self.device)
        assert self.rollout_size is not None
        # One optimizer step on one minibatch of the iteration's policy: ρ = 1 by construction, and
        # the step's own detached log-probs are the old ones (old_logprobs stays None).
        on_policy = old_is_current(
            ppo_epochs=self.ppo_epochs,
            minibatches=num_minibatches(self.rollout_size, self.minibatch_size),
            dropout_free=self.policy.dropout_free,
        )
        scored = score_buffer(
            self.policy,
            batch,
            self.micro_batch_size,
            reference=self.kl_coef > 0,
            temperature=self.logprob_temperature,
            old=not on_policy,
        )
        self.policy.train(was_training)
        plan = plan_minibatches(
            self.buffer.rows,
            self.rollout_size,
            self.minibatch_size,
            self.ppo_epochs,
            seed=_derive_seed(self.seed, self.current_epoch, self.global_rank),
        )
        self.buffer = IterationBuffer(
            batch=scored, rows=self.buffer.rows, plan=plan, iteration=self.buffer.iteration
        )
        self._update_started = time.perf_counter()
        # Timings and counters are one value per iteration: batch_size=1 (nothing to infer).
        self.log(
            "time/score_old_s",
            self._update_started - started,
            on_epoch=True,
            on_step=False,
            batch_size=1,
        )

    def training_step(self, batch: RolloutBatch, batch_idx: int) -> None:
        optimizer = self.optimizers()
        assert not isinstance(optimizer, list)
        world = self.trainer.world_size
        rows = len(batch)
        # The rate this step trains with: the scheduler steps after the iteration's last step.
        lr = optimizer.param_groups[0]["lr"]
        dummy = rows == 0  # a rank with nothing left still joins the collective backward
        if dummy:
            assert self.buffer is not None
            batch = self.buffer.batch.select([0]).to(self.device)
        counts, width = local_counts(batch)
        if dummy:
            counts.zero_()
            width.zero_()
        counts = self._all_reduce(counts, "sum")
        width = self._all_reduce(width, "max")
        norm = Normalisers(int(counts[0]), int(counts[1]), int(width[0]))
        if norm.tokens == 0:
            # No rank has a token to train (rows dropped, episodes with no sampled token): every
            # rank skips alike, as a step on zero gradients still moves AdamW's weights
            # (momentum, weight decay) and advances its step count.
            self._finish_step(batch_idx)
            # Log the statistics of no tokens (0), not what Lightning would re-log for every key
            # a step leaves out: the previous step's values.
            zeros = dict.fromkeys([*self._train_metrics, "train/grad_norm", "train/tokens"], 0.0)
            self._log_step(0.0, zeros, lr, rows)
            return
        step = StepStats()
        for micro in micro_batches(batch, self.micro_batch_size):
            out = self.policy.token_logprobs(
                micro.input_ids,
                micro.attention_mask,
                with_entropy=self.log_entropy,
                temperature=self.logprob_temperature,
                score_mask=micro.loss_mask,
            )
            # No old log-probs: the update is exactly on-policy (see on_train_epoch_start).
            old = micro.old_logprobs if micro.old_logprobs is not None else out.logprobs.detach()
            result = cwrpo_loss(
                out.logprobs,
                old,
                micro.advantages,
                micro.loss_mask,
                ref_logprobs=micro.ref_logprobs if self.kl_coef > 0 else None,
                rollout_logprobs=micro.rollout_logprobs,
                clip_eps_low=self.clip_eps_low,
                clip_eps_high=self.clip_eps_high,
                kl_coef=self.kl_coef,
                kl_estimator=self.kl_estimator,
                loss_agg=self.loss_agg,
                tis_cap=self.tis_cap,
                entropy=out.entropy,
                **norm.loss_kwargs(self.loss_agg),
            )
            # DDP and FSDP2 average gradients over ranks; the normalisers above are already global.
            self.manual_backward(result.loss * (0.0 if dummy else world))
            step.add(result, count=not dummy)
        grad_norm = self._clip_and_norm()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        self._finish_step(batch_idx)
        # Every rank's parts were divided by the global normalisers: sums over ranks are whole.
        sums, maxes = step.packed()
        metrics = {
            f"train/{name}": value
            for name, value in step.result(
                self._all_reduce(sums, "sum"), self._all_reduce(maxes, "max")
            ).items()
        }
        metrics.pop("train/num_tokens", None)
        loss_value = metrics.pop("train/loss")
        metrics["train/grad_norm"] = grad_norm
        metrics["train/tokens"] = float(norm.tokens)
        self._train_metrics = list(metrics)
        self._log_step(loss_value, metrics, lr, rows)

    def _log_step(self, loss: float, metrics: dict[str, float], lr: float, rows: int) -> None:
        """One optimizer step's values, plain floats (no device tensors to sync), in two calls:
        the loss for the progress bar, everything else at once (step values only, so the batch
        size, which weights epoch means, does not matter)."""
        size = max(rows, 1)
        self.log("train/loss", loss, prog_bar=True, on_step=True, on_epoch=False, batch_size=size)
        self.log_dict({**metrics, "train/lr": lr}, on_step=True, on_epoch=False, batch_size=size)

    def _finish_step(self, batch_idx: int) -> None:
        if batch_idx == self.steps_per_iteration() - 1:
            self._end_iteration()

    def _end_iteration(self) -> None:
        """After the iteration's last optimizer step: step the scheduler, time the update."""
        scheduler = self.lr_schedulers()
        if scheduler is not None and not isinstance(scheduler, list):
            scheduler.step()
        if self._update_started is not None:
            self.log(
                "time/update_s",
                time.perf_counter() - self._update_started,
                on_epoch=True,
                on_step=False,
                batch_size=1,
            )
            self._update_started = None

    def _all_reduce(self, value: torch.Tensor, op: Literal["sum", "max"]) -> torch.Tensor:
        if self.trainer.world_size > 1 and dist.is_available() and dist.is_initialized():
            value = value.clone()
            dist.all_reduce(value, op=dist.ReduceOp.SUM if op == "sum" else dist.ReduceOp.MAX)
        return value

    def _clip_and_norm(self) -> float:
        params = [p for p in self.policy.trainable_parameters() if p.grad is not None]
        if not params:
            return 0.0
        max_norm = self.max_grad_norm if self.max_grad_norm is not None else float("inf")
        norm = torch.nn.utils.clip_grad_norm_(params, max_norm)
        if hasattr(norm, "full_tensor"):  # FSDP2: a DTensor
            norm = norm.full_tensor()
        return float(norm)

    # -- evaluation ----------------------------------------------------------------------------

    def validation_step(self, batch: Any, batch_idx: int) -> None:
        self._evaluate(batch, "val")

    def test_step(self, batch: Any, batch_idx: int) -> None:
        self._evaluate(batch, "test")

    def _evaluate(self, tasks: Any, stage: Literal["val", "test"]) -> None:
        if self.player is None:
            raise ValueError(
                f"CWRPOModule: {stage} needs a RolloutCallback in trainer.callbacks to play episodes"
            )
        trajectories = self.player.play_greedy(list(tasks), stage)
        for trajectory in trajectories:
            answer = trajectory.reward_components.get("answer", float("nan"))
            correct = 0.0 if trajectory.error is not None or answer != answer else float(answer)
            self.eval_accuracy[trajectory.source].update(correct)
        for source, metric in self.eval_accuracy.items():
            self.log(
                f"{stage}/accuracy/{source}",
                metric,
                on_epoch=True,
                on_step=False,
                batch_size=len(trajectories),
            )
        rewards = [t.reward for t in trajectories if t.error is None]
        if rewards:
            self.log(
                f"{stage}/reward/total",
                sum(rewards) / len(rewards),
                on_epoch=True,
                batch_size=len(rewards),
                sync_dist=True,
            )

    # -- checkpoints ---------------------------------------------------------------------------

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Every rank's buffer, loader position and RNG states (gathered; rank 0 writes them)."""
        mine = {
            "buffer": self.buffer.state_dict() if self.buffer is not None else None,
            "rng": _rng_state(),
        }
        if self.trainer.world_size > 1 and dist.is_initialized():
            # Serialise first: all_gather_object cannot pickle tensors' storages under gloo.
            payload = io.BytesIO()
            torch.save(mine, payload)
            gathered: list[Any] = [None] * self.trainer.world_size
            dist.all_gather_object(gathered, payload.getvalue())
            states = [torch.load(io.BytesIO(b), weights_only=False) for b in gathered]
        else:
            states = [mine]
        checkpoint["flowsteer"] = {"ranks": states, "loader": self.loader.state_dict()}

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        state = checkpoint.get("flowsteer")
        if not state:
            return
        ranks = state["ranks"]
        if len(ranks) != self.trainer.world_size:
            raise ValueError(
                f"CWRPOModule: the checkpoint was written by {len(ranks)} ranks, this run has "
                f"{self.trainer.world_size}; resume with the same number of devices"
            )
        mine = ranks[self.trainer.global_rank]
        self.buffer = IterationBuffer.from_state_dict(mine["buffer"]) if mine["buffer"] else None
        self._pending_rank_state = mine
        self.loader.load_state_dict(state["loader"])

    def on_train_start(self) -> None:
        if self._pending_rank_state is not None:
            _set_rng_state(self._pending_rank_state["rng"])
            self._pending_rank_state = None
        if self.buffer is not None and self.buffer.plan is not None:
            self._update_started = time.perf_counter()

    def minibatches(self, start: int) -> Iterator[RolloutBatch]:
        """This iteration's minibatches from step ``start`` on (what the train loader yields)."""
        if self.buffer is None or self.buffer.plan is None:
            raise RuntimeError(
                "CWRPOModule: the buffer is not scored yet (on_train_epoch_start did not run)"
            )
        for rows in self.buffer.plan.steps[start:]:
            yield trim(self.buffer.batch.select(list(rows)))


def _check_settings(
    *,
    ppo_epochs: int,
    minibatch_size: int,
    micro_batch_size: int,
    clip_eps_low: float,
    clip_eps_high: float,
    kl_coef: float,
    kl_estimator: str,
    loss_agg: str,
    tis_cap: float | None,
    max_grad_norm: float | None,
) -> None:
    """Refuse settings the update would reject (or silently ignore) only after a full rollout."""

    def bad(name: str, value: Any, allowed: str) -> ValueError:
        return ValueError(f"CWRPOModule: {name} must be {allowed}, got {value!r}")

    for name, value in (
        ("ppo_epochs", ppo_epochs),
        ("minibatch_size", minibatch_size),
        ("micro_batch_size", micro_batch_size),
    ):
        if value < 1:
            raise bad(name, value, ">= 1")
    # ρ is clipped to [1 - ε_low, 1 + ε_high]: ε_low >= 1 would allow ρ <= 0, ε <= 0 no update.
    for name, value in (("clip_eps_low", clip_eps_low), ("clip_eps_high", clip_eps_high)):
        if not 0.0 < value < 1.0:
            raise bad(name, value, "in (0, 1)")
    if not kl_coef >= 0.0:  # `not >=` also catches NaN
        raise bad("kl_coef", kl_coef, ">= 0 (0: no KL penalty)")
    if kl_estimator not in get_args(KLEstimator):
        raise bad("kl_estimator", kl_estimator, f"one of {get_args(KLEstimator)}")
    if loss_agg not in get_args(LossAgg):
        raise bad("loss_agg", loss_agg, f"one of {get_args(LossAgg)}")
    if tis_cap is not None and not tis_cap > 0.0:
        raise bad("tis_cap", tis_cap, "> 0, or null to turn truncated importance sampling off")
    if max_grad_norm is not None and not max_grad_norm > 0.0:
        raise bad("max_grad_norm", max_grad_norm, "> 0, or null to never clip")


def _decoder_layers(model: torch.nn.Module) -> list[torch.nn.Module]:
    """The transformer blocks FSDP2 shards one by one (HF models name them `_no_split_modules`)."""
    names: set[str] = set()
    for module in model.modules():
        names.update(getattr(module, "_no_split_modules", None) or [])
    layers = [m for m in model.modules() if type(m).__name__ in names]
    if not layers:
        raise ValueError(f"CWRPOModule: found no decoder layers to shard in {type(model).__name__}")
    return layers


def _derive_seed(seed: int, iteration: int, rank: int) -> int:
    return (seed * 1_000_003 + iteration * 7919 + rank) & 0x7FFFFFFF


def _rng_state() -> dict[str, Any]:
    state: dict[str, Any] = {"python": random.getstate(), "torch": torch.get_rng_state()}
    try:
        import numpy as np

        name, keys, pos, has_gauss, cached = np.random.get_state()
        # Tensors and plain numbers only, so Lightning's weights_only checkpoint loading accepts it.
        state["numpy"] = (
            name,
            torch.from_numpy(keys.copy()),
            int(pos),
            int(has_gauss),
            float(cached),
        )
    except ImportError:  # pragma: no cover
        pass
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: dict[str, Any]) -> None:
    random.setstate(state["python"])
    torch.set_rng_state(state["torch"])
    if "numpy" in state:
        import numpy as np

        name, keys, pos, has_gauss, cached = state["numpy"]
        np.random.set_state((name, keys.numpy(), pos, has_gauss, cached))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


__all__ = ["CWRPOModule"]
