"""`RolloutSource`: the seam for "what fills the trainer's buffer each RL iteration".

`CWRPOModule` trains on whatever a rollout source hands it; `RolloutCallback` (episodes on the
canvas) is one, `callbacks.single_turn.SingleTurnSource` (one completion per prompt, a string
reward) another. A source is a Lightning callback that implements two methods:

* `episodes_per_iteration(trainer)`: how many episodes this rank plays every iteration. The
  module needs it at setup, before any rollout, to size its loader (steps per iteration);
* `play(trainer, pl_module)`: this iteration's episodes, as `Trajectory` objects (tokens, loss
  mask, engine log-probs, reward, group id).

The base class does the rest, identically for every source: it sets the module's rollout size at
setup, and at every iteration start plays, drops failed episodes (reward NaN or an error),
computes group-relative advantages, collates the buffer and hands it to the module. Override
`on_rollout` to log what the episodes say.

Asynchronous rollouts (``async_rollouts=True``, off by default: the paper is synchronous). The
next iteration's episodes are sampled in a background thread while this iteration's update
runs, so a buffer is one weight version stale: iteration k+1 trains on episodes sampled with
the weights of iteration k's start. A source supports it by implementing `prepare` (the part
of a rollout that reads the trainer, on the trainer's thread; it returns the part that samples).
The engine's next weights are pushed only after the background rollout finished
(`join_prefetch`); a buffer more than one version stale is refused; the sampler mismatch is
corrected by truncated importance sampling (``async_tis_cap``); a checkpoint carries the
pending rollout's episodes, so a resumed run trains on exactly what the uninterrupted one did.
See docs/design.md §13.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

import lightning as L
import torch

from flowsteer.rl.advantages import Advantages, compute_advantages
from flowsteer.rollout.batch import collate
from flowsteer.rollout.trajectory import Trajectory


@dataclass
class _Prefetch:
    """The rollout of a future iteration: running in ``thread``, or finished (``thread`` None)."""

    iteration: int
    thread: threading.Thread | None = None
    trajectories: list[Trajectory] = field(default_factory=list)
    seconds: float = 0.0
    error: BaseException | None = None


class RolloutSource(L.Callback):
    """Base class of the callbacks that fill `CWRPOModule`'s buffer (see the module docstring).

    Args:
        std_scale: Advantage std: per ``group`` (GRPO), per ``batch``, or ``none`` (Dr. GRPO);
            see `flowsteer.rl.advantages.compute_advantages`.
        zero_variance: Groups whose rewards are all equal: ``keep`` with A = 0, or ``drop``
            them before the update (their tokens would still count in the loss normaliser).
        async_rollouts: Sample iteration k+1's episodes while iteration k's update runs (one
            weight version stale; single process only). Off: the paper's synchronous loop.
        async_tis_cap: Under ``async_rollouts``, the truncated importance sampling cap the
            module gets when its own ``tis_cap`` is unset (null); a ``tis_cap`` set on the
            module wins. ``None``: leave TIS off (the stale sampler is then uncorrected).
    """

    def __init__(
        self,
        *,
        std_scale: Literal["group", "batch", "none"] = "group",
        zero_variance: Literal["keep", "drop"] = "keep",
        async_rollouts: bool = False,
        async_tis_cap: float | None = 2.0,
    ) -> None:
        if async_tis_cap is not None and not async_tis_cap > 0.0:
            raise ValueError(
                f"{type(self).__name__}: async_tis_cap must be > 0, or null to leave truncated "
                f"importance sampling off, got {async_tis_cap!r}"
            )
        self.std_scale = std_scale
        self.zero_variance = zero_variance
        self.async_rollouts = bool(async_rollouts)
        self.async_tis_cap = async_tis_cap
        self.staleness = 0  # weight versions between the trainer and the last buffer's sampler
        self.wait_s = 0.0  # how long the last iteration waited for its rollout
        self._prefetch: _Prefetch | None = None
        self._starts: list[int] = []  # the trainer's step at each iteration start: its versions

    def episodes_per_iteration(self, trainer: L.Trainer) -> int:
        """Episodes this rank plays every iteration (the same every iteration)."""
        raise NotImplementedError(
            f"{type(self).__name__} must implement RolloutSource.episodes_per_iteration(trainer)"
        )

    def play(self, trainer: L.Trainer, pl_module: L.LightningModule) -> list[Trajectory]:
        """This iteration's episodes on this rank (``episodes_per_iteration`` of them)."""
        raise NotImplementedError(
            f"{type(self).__name__} must implement RolloutSource.play(trainer, pl_module)"
        )

    def prepare(
        self, trainer: L.Trainer, pl_module: L.LightningModule, iteration: int
    ) -> Callable[[], list[Trajectory]]:
        """Under ``async_rollouts``: take what iteration ``iteration``'s rollout needs from the
        trainer (tasks, seeds, a check of the engine's weights) now, on the trainer's thread,
        and return the call that samples it, which runs in a background thread and must not
        touch the trainer or the module."""
        raise NotImplementedError(
            f"{type(self).__name__} does not support async_rollouts: it must implement "
            f"RolloutSource.prepare(trainer, pl_module, iteration)"
        )

    def on_rollout(
        self,
        trainer: L.Trainer,
        pl_module: L.LightningModule,
        trajectories: list[Trajectory],
        advantages: Advantages,
        seconds: float,
    ) -> None:
        """Called after the buffer is filled (for logging); does nothing by default."""

    # -- what the base class does for every source ---------------------------------------------

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        if stage == "fit":
            size = int(self.episodes_per_iteration(trainer))
            if size < 1:
                raise ValueError(
                    f"{type(self).__name__}.episodes_per_iteration returned {size}; "
                    f"a rollout needs at least one episode"
                )
            pl_module.rollout_size = size
            if self.async_rollouts:
                self._setup_async(trainer, pl_module)

    def _setup_async(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        name = type(self).__name__
        if type(self).prepare is RolloutSource.prepare:
            raise ValueError(
                f"{name}: async_rollouts needs the source to implement "
                f"RolloutSource.prepare(trainer, pl_module, iteration)"
            )
        if trainer.world_size > 1:
            # Every rank's pending rollout would have to be gathered into the checkpoint (the
            # callback state Lightning writes is rank 0's): not built yet.
            raise ValueError(
                f"{name}: async_rollouts runs in a single process only; this run has "
                f"{trainer.world_size} ranks (set async_rollouts: false)"
            )
        if getattr(pl_module, "tis_cap", 0.0) is None and self.async_tis_cap is not None:
            # π_old (the trainer at the iteration's start) is one version ahead of the sampler.
            pl_module.tis_cap = self.async_tis_cap

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self.async_rollouts:
            trajectories, seconds = self._next_async(trainer, pl_module)
        else:
            started = time.perf_counter()
            trajectories = self.play(trainer, pl_module)
            seconds = time.perf_counter() - started
        self._check_staleness(trainer, pl_module, trajectories)
        expected = pl_module.rollout_size
        if len(trajectories) > expected:  # fewer is fine: they train like dropped groups
            raise RuntimeError(
                f"{type(self).__name__}.play returned {len(trajectories)} episodes; "
                f"episodes_per_iteration said at most {expected}"
            )
        ok = [t for t in trajectories if t.error is None and not math.isnan(t.reward)]
        if not ok:
            first = trajectories[0].error if trajectories else "none"
            raise RuntimeError(
                f"{type(self).__name__}: every one of {len(trajectories)} episodes failed this "
                f"iteration (first error: {first})"
            )
        rewards = torch.tensor([t.reward for t in ok], dtype=torch.float32)
        groups = torch.tensor([t.group_id for t in ok], dtype=torch.long)
        advantages = compute_advantages(
            rewards, groups, std_scale=self.std_scale, zero_variance=self.zero_variance
        )
        batch = collate(ok, advantages.values, pl_module.policy.tokenizer.pad_token_id)
        rows = [i for i, keep in enumerate(advantages.keep.tolist()) if keep]
        pl_module.set_rollout(batch, rows)
        self.on_rollout(trainer, pl_module, trajectories, advantages, seconds)
        if self.async_rollouts:  # after on_rollout: its counters are this rollout's alone
            last = trainer.max_epochs
            iteration = trainer.current_epoch
            if last is None or last < 0 or iteration + 1 < last:
                self._launch(trainer, pl_module, iteration + 1)

    # -- asynchronous rollouts ---------------------------------------------------------------------

    def _next_async(
        self, trainer: L.Trainer, pl_module: L.LightningModule
    ) -> tuple[list[Trajectory], float]:
        """This iteration's episodes: prefetched, or played now (the first iteration, or a
        resume without a pending rollout)."""
        iteration = trainer.current_epoch
        self.join_prefetch()
        done, self._prefetch = self._prefetch, None
        if done is None:
            started = time.perf_counter()
            trajectories = self.prepare(trainer, pl_module, iteration)()
            seconds = time.perf_counter() - started
            self.wait_s = seconds
        elif done.iteration != iteration:
            raise RuntimeError(
                f"{type(self).__name__}: the prefetched rollout is for iteration "
                f"{done.iteration}, but iteration {iteration} is starting"
            )
        else:
            trajectories, seconds = done.trajectories, done.seconds
        return trajectories, seconds

    def _launch(self, trainer: L.Trainer, pl_module: L.LightningModule, iteration: int) -> None:
        run = self.prepare(trainer, pl_module, iteration)
        prefetch = _Prefetch(iteration)

        def work() -> None:
            started = time.perf_counter()
            try:
                prefetch.trajectories = run()
            except BaseException as exc:  # re-raised on the trainer's thread at the join
                prefetch.error = exc
            prefetch.seconds = time.perf_counter() - started

        prefetch.thread = threading.Thread(target=work, name="flowsteer-rollout", daemon=True)
        self._prefetch = prefetch
        prefetch.thread.start()

    def prefetching(self) -> bool:
        """Whether a background rollout is running now (on another thread than the caller's)."""
        thread = self._prefetch.thread if self._prefetch is not None else None
        return thread is not None and thread is not threading.current_thread()

    def join_prefetch(self) -> None:
        """Wait for the background rollout, if one runs: afterwards the engine is idle and its
        weights may change. Re-raises what the rollout raised."""
        if not self.prefetching():
            return
        prefetch = self._prefetch
        assert prefetch is not None and prefetch.thread is not None
        started = time.perf_counter()
        prefetch.thread.join()
        self.wait_s = time.perf_counter() - started
        prefetch.thread = None
        if prefetch.error is not None:
            self._prefetch = None
            raise RuntimeError(
                f"{type(self).__name__}: the background rollout of iteration "
                f"{prefetch.iteration} failed: {prefetch.error}"
            ) from prefetch.error

    def _check_staleness(
        self, trainer: L.Trainer, pl_module: L.LightningModule, trajectories: list[Trajectory]
    ) -> None:
        """Staleness: the weight versions (the trainer's step at an iteration start, what the
        engine is synced to) published after the oldest trajectory's; refused above the bound
        (1 under ``async_rollouts``). A version older than the known history counts one more."""
        step = trainer.global_step
        if not self._starts or self._starts[-1] != step:
            self._starts = [*self._starts[-2:], step]
        if not trajectories:
            self.staleness = 0
            return
        oldest = min(t.weights_version for t in trajectories)
        newer = [s for s in self._starts if oldest < s <= step]
        self.staleness = len(newer) + (1 if oldest < self._starts[0] else 0)
        if self.async_rollouts and (self.staleness > 1 or oldest > step):
            raise RuntimeError(
                f"{type(self).__name__}: the buffer of iteration {trainer.current_epoch} was "
                f"sampled with weights version {oldest}, {self.staleness} versions behind the "
                f"trainer (step {step}); async_rollouts allows at most 1"
            )

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        # The engine's next weights are pushed after this hook: its rollout must be over.
        self.join_prefetch()

    def teardown(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        prefetch = self._prefetch
        if prefetch is not None and prefetch.thread is not None:
            prefetch.thread.join()  # never leave a thread sampling past the run
            self._prefetch = None

    def state_dict(self) -> dict[str, Any]:
        """The pending rollout's episodes (waiting for it first): a resumed run trains on them,
        as the uninterrupted run does (its weights are gone by the time a checkpoint is read)."""
        if not self.async_rollouts:
            return {}
        self.join_prefetch()
        prefetch = self._prefetch
        if prefetch is None:
            return {"prefetch": None, "version_starts": list(self._starts)}
        return {
            "version_starts": list(self._starts),
            "prefetch": {
                "iteration": prefetch.iteration,
                "seconds": prefetch.seconds,
                "trajectories": [asdict(t) for t in prefetch.trajectories],
            },
        }

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self._starts = [int(s) for s in state_dict.get("version_starts", [])]
        saved = state_dict.get("prefetch")
        if saved is None:
            return
        if not self.async_rollouts:
            raise ValueError(
                f"{type(self).__name__}: the checkpoint holds a prefetched rollout (it was "
                f"trained with async_rollouts); resume with async_rollouts: true"
            )
        self._prefetch = _Prefetch(
            int(saved["iteration"]),
            trajectories=[Trajectory(**t) for t in saved["trajectories"]],
            seconds=float(saved["seconds"]),
        )
