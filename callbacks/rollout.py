"""`RolloutCallback`: at the start of every RL iteration, play G episodes per task and fill the
module's buffer.

It pulls this rank's next tasks from the DataModule, runs the episodes through the injected engine
(default: `HFEngine` on the live policy) on the canvas with the injected executor, scores them,
computes advantages, collates the buffer the epoch trains on, and logs what the episodes say
(`EpisodeStats`, backend faults, a sample table). Episodes the engine aborted have reward NaN and
never train; backend faults are counted from the backend's own counters. It also plays the greedy
episodes of validation and test for the module (`play_greedy`).

One operator library reaches the canvas (and so the policy's system prompt), the executor, the
reward and the action grammar: the ``library`` setting, else the executor's, else the default
twelve. An executor or reward holding a different library is refused at setup.

With ``async_rollouts`` the next iteration's episodes are played in a background thread during
the update (`RolloutSource`); the default `HFEngine` then samples from its own copy of the
policy's weights, which this callback refreshes after each iteration, so generation never sees
parameters the optimizer is changing.
"""

from __future__ import annotations

import asyncio
import copy
import math
from collections.abc import Callable, Coroutine, Sequence
from typing import Any, Literal, TypeVar

import lightning as L
import torch
from lightning.pytorch.utilities import rank_zero_only

from callbacks.rollout_source import RolloutSource
from flowsteer.canvas import FinishConstraints
from flowsteer.canvas.execution import Executor
from flowsteer.llm.backend import BackendStats
from flowsteer.operators.library import OperatorLibrary
from flowsteer.rewards import WorkflowReward
from flowsteer.rl.advantages import Advantages
from flowsteer.rollout.action_grammar import ActionGrammar
from flowsteer.rollout.engine import Engine, SamplingParams
from flowsteer.rollout.episode_stats import EpisodeStats
from flowsteer.rollout.runner import RolloutRunner
from flowsteer.rollout.trajectory import Trajectory
from flowsteer.tasks import Task

T = TypeVar("T")


class RolloutCallback(RolloutSource):
    """Fills the rollout buffer at ``on_train_epoch_start`` with episodes on the canvas.

    Args:
        executor: Runs each workflow on the backend LLM (``None``: structure-only episodes).
        reward: R(τ) of a finished episode (default: the paper's gated reward).
        engine: Samples the policy's turns; ``None``: `HFEngine` on the live policy (CPU, no
            weight sync needed).
        group_size: Episodes per task (G), >= 2.
        max_turns: Policy turns per episode (paper: 20).
        max_context_tokens: Longest conversation (paper: 16,384).
        max_new_tokens: Most tokens per policy turn.
        temperature: Sampling temperature of training episodes, > 0 (validation is greedy); the
            one source of the temperature: the module takes every log-prob at it too.
        top_p: Nucleus mass.
        top_k: Top-k (0: off).
        std_scale: Advantage std: per ``group``, per ``batch``, or ``none`` (Dr. GRPO).
        zero_variance: Zero-variance groups: ``keep`` with A = 0, or ``drop`` before the update.
        finish_constraints: What ``finish`` requires.
        execution_timeout_s: Wall-clock limit of one workflow execution.
        enable_thinking: Passed to the chat template (Qwen3).
        hf_batch_size: Batch size of the default `HFEngine`.
        seed: Seeds every episode's sampling (per iteration and rank).
        check_backend: Send one tiny request to the executor's backend at start, so an
            unreachable backend fails before any rollout.
        samples_to_log: Episodes written to TensorBoard's text table each iteration.
        progress: Show a rollout progress bar (episodes done / total, mean reward so far).
        constrained_actions: Decode every policy turn under the action grammar of the canvas's
            state (`ActionGrammar`), so every turn is an action the canvas accepts
            (``rollout/invalid_action_rate`` is 0); training and validation episodes alike.
        max_think_chars: Under ``constrained_actions``, longest ``<think>`` text per turn.
        max_prompt_chars: Under ``constrained_actions``, longest prompt per turn.
        library: The operator library of the canvas, the executor, the reward and the
            grammar: a ``.yaml``/``.json`` file or an import path ``pkg.module:NAME``
            (`OperatorLibrary.load`); ``None``: the executor's library, else the default.
        async_rollouts: Play iteration k+1's episodes in a background thread while iteration
            k's update runs (one weight version stale; see `RolloutSource`). Off by default.
        async_tis_cap: Under ``async_rollouts``, the TIS cap the module gets when its own
            ``tis_cap`` is null (a module ``tis_cap`` wins); ``None``: TIS stays off.
    """

    def __init__(
        self,
        executor: Executor | None = None,
        reward: WorkflowReward | None = None,
        engine: Engine | None = None,
        group_size: int = 8,
        max_turns: int = 20,
        max_context_tokens: int = 16384,
        max_new_tokens: int = 1024,
        temperature: float = 1.0,
        top_p: float = 1.0,
        top_k: int = 0,
        std_scale: Literal["group", "batch", "none"] = "group",
        zero_variance: Literal["keep", "drop"] = "keep",
        finish_constraints: FinishConstraints | None = None,
        execution_timeout_s: float | None = None,
        enable_thinking: bool | None = None,
        hf_batch_size: int | None = None,
        seed: int = 0,
        check_backend: bool = True,
        samples_to_log: int = 8,
        progress: bool = True,
        constrained_actions: bool = False,
        max_think_chars: int = 256,
        max_prompt_chars: int = 512,
        library: str | None = None,
        async_rollouts: bool = False,
        async_tis_cap: float | None = 2.0,
    ) -> None:
        _check_settings(
            group_size=group_size,
            max_turns=max_turns,
            max_context_tokens=max_context_tokens,
            max_new_tokens=max_new_tokens,
            temperature=temperature,
            top_p=top_p,
            top_k=top_k,
            std_scale=std_scale,
            zero_variance=zero_variance,
            execution_timeout_s=execution_timeout_s,
            hf_batch_size=hf_batch_size,
            samples_to_log=samples_to_log,
        )
        try:
            self.library = None if library is None else OperatorLibrary.load(library)
        except ValueError as exc:
            raise ValueError(f"RolloutCallback: library: {exc}") from None
        self.constrained_actions = constrained_actions
        self.max_think_chars = max_think_chars
        self.max_prompt_chars = max_prompt_chars
        self.grammar: ActionGrammar | None = None
        self.executor = executor
        self.reward = reward if reward is not None else WorkflowReward()
        self.engine = engine
        self.group_size = group_size
        self.max_turns = max_turns
        self.max_context_tokens = max_context_tokens
        self.sampling = SamplingParams(
            max_tokens=max_new_tokens, temperature=temperature, top_p=top_p, top_k=top_k
        )
        super().__init__(
            std_scale=std_scale,
            zero_variance=zero_variance,
            async_rollouts=async_rollouts,
            async_tis_cap=async_tis_cap,
        )
        self.finish_constraints = finish_constraints
        self.execution_timeout_s = execution_timeout_s
        self.enable_thinking = enable_thinking
        self.hf_batch_size = hf_batch_size
        self.seed = seed
        self.check_backend = check_backend
        self.samples_to_log = samples_to_log
        self.progress = progress
        self.live_engine = engine is None
        self.runner: RolloutRunner | None = None
        self.greedy_runner: RolloutRunner | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._backend_seen = BackendStats()
        self._eval_traffic: dict[str, dict[str, int]] = {}  # stage -> counters this epoch
        self._tokenizer: Any = None
        self._trainer: L.Trainer | None = None
        self._policy: Any = None
        self.last_metrics: dict[str, float] = {}

    # -- setup ---------------------------------------------------------------------------------

    def run_async(self, coroutine: Coroutine[Any, Any, T]) -> T:
        """Run a coroutine on this callback's event loop (one loop for the whole run, so
        backends that keep per-loop connections keep them). A background rollout drives the
        loop while it runs: any other caller waits for it to finish first."""
        self.join_prefetch()
        if self._loop is None or self._loop.is_closed():
            self._loop = asyncio.new_event_loop()
        return self._loop.run_until_complete(coroutine)

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        policy = pl_module.policy
        self._tokenizer = policy.tokenizer
        self._trainer, self._policy = trainer, policy
        if self.engine is None:
            from lightning.pytorch.strategies import ModelParallelStrategy

            if isinstance(trainer.strategy, ModelParallelStrategy):
                raise ValueError(
                    "RolloutCallback: the default HFEngine samples from the live policy, which "
                    "ModelParallelStrategy shards; set rollout engine to a VLLMEngine"
                )
            from flowsteer.rollout.hf_engine import HFEngine

            if self.async_rollouts:  # its own weights: the update must not change them mid-turn
                model = copy.deepcopy(policy.model).requires_grad_(False).eval()
                self.engine = HFEngine(
                    model, policy.tokenizer, batch_size=self.hf_batch_size, own_weights=True
                )
            else:
                self.engine = HFEngine(
                    policy.model, policy.tokenizer, batch_size=self.hf_batch_size
                )
        if self.async_rollouts and getattr(self.engine, "sleep_mode", False):
            raise ValueError(
                "RolloutCallback: async_rollouts keeps the engine sampling during the update, "
                "when sleep_mode frees its KV cache; turn one of them off"
            )
        start = getattr(self.engine, "start", None)
        if start is not None:  # lazy engines (VLLMEngine) join the world the strategy made
            root = trainer.strategy.root_device
            start(
                rank=trainer.global_rank,
                world_size=trainer.world_size,
                device_index=root.index if root.index is not None else trainer.local_rank,
            )
        self._share_library()
        if self.constrained_actions:
            self.grammar = ActionGrammar(
                max_think_chars=self.max_think_chars,
                max_prompt_chars=self.max_prompt_chars,
                stop_token_ids=_eos_ids(policy.model, policy.tokenizer),
            )
        if self.check_backend and self.executor is not None:
            self._check_backend()
        self.runner = self._runner(self.sampling)
        self.greedy_runner = self._runner(
            SamplingParams(max_tokens=self.sampling.max_tokens, temperature=0.0)
        )
        pl_module.player = self
        # The trainer's log-probs must be of the distribution the engine samples from.
        pl_module.logprob_temperature = self.sampling.logprob_temperature
        super().setup(trainer, pl_module, stage)

    def episodes_per_iteration(self, trainer: L.Trainer) -> int:
        datamodule = trainer.datamodule
        if datamodule is None or not hasattr(datamodule, "next_train_tasks"):
            raise ValueError("RolloutCallback: fit needs a TaskDataModule (data: in the config)")
        return datamodule.tasks_per_rank * self.group_size

    def _runner(self, sampling: SamplingParams) -> RolloutRunner:
        assert self.engine is not None
        return RolloutRunner(
            self.engine,
            self._tokenizer,
            self.executor,
            self.reward,
            library=self.library,
            grammar=self.grammar,
            max_turns=self.max_turns,
            max_context_tokens=self.max_context_tokens,
            sampling=sampling,
            finish_constraints=self.finish_constraints,
            execution_timeout_s=self.execution_timeout_s,
            enable_thinking=self.enable_thinking,
        )

    def _share_library(self) -> None:
        """Give one library object to the canvas, the executor and the reward (the grammar is
        built from the canvas's), refusing a collaborator configured with another one."""
        held = getattr(self.executor, "library", None)
        default = OperatorLibrary.default()
        if self.library is None:
            self.library = held if isinstance(held, OperatorLibrary) else default
        want = self.library.to_dict()
        if isinstance(held, OperatorLibrary) and held is not self.library:
            # An executor built from YAML holds the default library unless told otherwise.
            if held.to_dict() not in (want, default.to_dict()):
                raise ValueError(
                    f"RolloutCallback: the executor's operator library ({', '.join(held.names)}) "
                    f"differs from the rollout library ({', '.join(self.library.names)}); set "
                    "the library once, in the rollout callback's `library`"
                )
            self.executor.library = self.library  # type: ignore[union-attr]
        own = getattr(getattr(self.reward, "structure", None), "library", None)
        if own is not None and own is not self.library and own.to_dict() != want:
            raise ValueError(
                f"RolloutCallback: the reward's operator library ({', '.join(own.names)}) "
                f"differs from the rollout library ({', '.join(self.library.names)}); leave "
                "the reward's library unset (episodes score with the canvas's library)"
            )

    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._backend_seen = self._backend_stats()

    def _check_backend(self) -> None:
        backend = getattr(self.executor, "backend", None)
        if backend is None:
            return
        reply = self.run_async(
            backend.complete([{"role": "user", "content": "ping"}], max_tokens=4, temperature=0.0)
        )
        if reply.error and not reply.error.startswith("empty content"):  # empty: it did answer
            where = getattr(backend, "base_url", None) or getattr(backend, "model_path", "")
            raise ValueError(
                f"RolloutCallback: the executor's backend {type(backend).__name__} "
                f"({where}) does not answer: {reply.error}"
            )

    def _backend_stats(self) -> BackendStats:
        backend = getattr(self.executor, "backend", None)
        stats = getattr(backend, "stats", None)
        return stats if isinstance(stats, BackendStats) else BackendStats()

    # -- the iteration -------------------------------------------------------------------------

    def play(self, trainer: L.Trainer, pl_module: L.LightningModule) -> list[Trajectory]:
        trajectories = self.prepare(trainer, pl_module, trainer.current_epoch)()
        sleep = getattr(self.engine, "sleep", None)
        if sleep is not None:  # sleep-mode engines free their KV cache for the update
            sleep()
        return trajectories

    def prepare(
        self, trainer: L.Trainer, pl_module: L.LightningModule, iteration: int
    ) -> Callable[[], list[Trajectory]]:
        """Check the engine's weights, draw the iteration's tasks and seed on this thread;
        return the call that plays them (in the background under ``async_rollouts``)."""
        assert self.runner is not None and self.engine is not None
        if self.live_engine and not self.async_rollouts:
            # The engine samples the live policy: it serves this step's weights by construction.
            self.run_async(self.engine.sync_weights(pl_module.policy, trainer.global_step))
        if self.engine.weights_version != trainer.global_step:
            raise RuntimeError(
                f"RolloutCallback: the engine serves weights version {self.engine.weights_version} "
                f"but the policy is at step {trainer.global_step}; add a WeightSyncCallback"
            )
        tasks = trainer.datamodule.next_train_tasks()
        seed = (self.seed * 1_000_003 + iteration * 7919 + trainer.global_rank) & 0x7FFFFFFF
        runner = self.runner
        if self.async_rollouts:  # no progress bar from the background thread
            return lambda: self._play(runner, tasks, seed, None)
        return lambda: self._play(runner, tasks, seed, trainer)

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self.async_rollouts and self.live_engine:  # a resumed run: the checkpoint's weights
            self._sync_own_engine(trainer.global_step)

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        super().on_train_epoch_end(trainer, pl_module)  # the rollout has finished
        if self.async_rollouts and self.live_engine:
            self._sync_own_engine(trainer.global_step)

    def _sync_own_engine(self, version: int) -> None:
        """Copy the policy into the default engine's own weights (async rollouts only)."""
        assert self.engine is not None
        self.run_async(self.engine.sync_weights(self._policy, version))

    def _play(
        self,
        runner: RolloutRunner,
        tasks: Sequence[Task],
        seed: int | None,
        trainer: L.Trainer | None,
    ) -> list[Trajectory]:
        total = len(tasks) * self.group_size
        bar = None
        if (
            self.progress
            and trainer is not None
            and trainer.is_global_zero
            and trainer.progress_bar_callback
        ):
            from tqdm.auto import tqdm

            bar = tqdm(total=total, desc="rollout", leave=False, dynamic_ncols=True)
        done: list[float] = []

        def on_done(trajectory: Trajectory) -> None:
            if not math.isnan(trajectory.reward):
                done.append(trajectory.reward)
            if bar is not None:
                bar.update(1)
                if done:
                    bar.set_postfix(reward=f"{sum(done) / len(done):.3f}")

        try:
            return self.run_async(
                runner.run(tasks, self.group_size, seed=seed, on_episode_done=on_done)
            )
        finally:
            if bar is not None:
                bar.close()

    def on_rollout(
        self,
        trainer: L.Trainer,
        pl_module: L.LightningModule,
        trajectories: list[Trajectory],
        advantages: Advantages,
        seconds: float,
    ) -> None:
        stats = EpisodeStats.of(trajectories, div_max=self.reward.structure.max_value)
        metrics = stats.to_dict("rollout")
        metrics["rollout/zero_variance_groups"] = float(advantages.zero_variance_groups)
        metrics["time/rollout_s"] = seconds
        if self.async_rollouts:
            metrics["rollout/staleness"] = float(self.staleness)
            metrics["time/rollout_wait_s"] = self.wait_s
        for name, value in getattr(self.engine, "memory", {}).items():
            metrics[f"memory/{name}"] = value
        now = self._backend_stats()
        seen, self._backend_seen = self._backend_seen, now
        metrics.update(_backend_metrics("backend", now, seen))
        for source in self._sources(trainer):  # every rank logs the same names
            metrics.setdefault(f"rollout/accuracy/{source}", math.nan)
        self._write(trainer, pl_module, metrics)
        self._log_samples(trainer, trajectories)

    def _sources(self, trainer: L.Trainer) -> list[str]:
        mixture = getattr(trainer.datamodule, "mixture", None)
        return sorted(mixture.pools) if mixture is not None else []

    def _write(
        self,
        trainer: L.Trainer,
        pl_module: L.LightningModule,
        metrics: dict[str, float],
        rollout: bool = True,
    ) -> None:
        """Reduce over ranks and write at once at the current step (not at epoch end), so an
        iteration's rollout statistics survive a kill before the iteration's updates finish."""
        names = sorted(metrics)
        raw = torch.tensor([metrics[n] for n in names], dtype=torch.float64)
        present = (~raw.isnan()).double()
        packed = torch.stack([raw.nan_to_num(0.0), present]).to(pl_module.device)
        if trainer.world_size > 1:
            packed = trainer.strategy.reduce(packed, reduce_op="sum")
        total, count = packed[0].cpu(), packed[1].cpu()
        reduced = {}
        for i, name in enumerate(names):
            if count[i] == 0:
                continue
            reduced[name] = float(total[i] if _reduce(name) == "sum" else total[i] / count[i])
        if trainer.is_global_zero and trainer.logger is not None:
            trainer.logger.log_metrics(reduced, step=trainer.global_step)
        if rollout:  # `last_metrics` are the last rollout's
            self.last_metrics = reduced

    @rank_zero_only
    def _log_samples(self, trainer: L.Trainer, trajectories: list[Trajectory]) -> None:
        from lightning.pytorch.loggers import TensorBoardLogger

        logger = trainer.logger
        if not isinstance(logger, TensorBoardLogger) or self.samples_to_log <= 0:
            return
        rows = ["| task | source | DSL | answer | reward |", "|---|---|---|---|---|"]
        for t in trajectories[: self.samples_to_log]:
            answer = "-" if t.answer is None else " ".join(t.answer.split())[:80]
            dsl = t.dsl or "(empty)"
            reward = "failed: " + str(t.error)[:60] if t.error else f"{t.reward:.3f}"
            rows.append(f"| {t.task_id} | {t.source} | {_cell(dsl)} | {_cell(answer)} | {reward} |")
        logger.experiment.add_text(
            "rollout/samples", "\n".join(rows), global_step=trainer.global_step
        )

    # -- evaluation ------------------------------------------------------------------------------

    def play_greedy(
        self, tasks: Sequence[Task], stage: Literal["val", "test"] = "val"
    ) -> list[Trajectory]:
        """One greedy episode per held-out task (what validation and test score).

        Their backend traffic is counted as ``{stage}/backend/*``, never as training's
        ``backend/*``: the training baseline moves past it.
        """
        assert self.greedy_runner is not None
        if self.async_rollouts and self.live_engine and self._trainer is not None:
            # Score the policy as it is now, as the synchronous default engine does.
            self._sync_own_engine(self._trainer.global_step)
        before = self._backend_stats()
        trajectories = self.run_async(self.greedy_runner.run(list(tasks), 1, seed=self.seed))
        after = self._backend_stats()
        delta = {name: getattr(after, name) - getattr(before, name) for name in _COUNTERS}
        self._backend_seen = self._backend_seen.plus(**delta)
        total = self._eval_traffic.setdefault(stage, dict.fromkeys(_COUNTERS, 0))
        for name, value in delta.items():
            total[name] += value
        return trajectories

    def on_validation_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._write_eval_traffic(trainer, pl_module, "val")

    def on_test_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._write_eval_traffic(trainer, pl_module, "test")

    def _write_eval_traffic(
        self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str
    ) -> None:
        # Every rank writes (the reduction is collective), with zeros if it played nothing.
        traffic = self._eval_traffic.pop(stage, dict.fromkeys(_COUNTERS, 0))
        zero = BackendStats()
        self._write(
            trainer,
            pl_module,
            _backend_metrics(f"{stage}/backend", zero.plus(**traffic), zero),
            rollout=False,
        )

    def teardown(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        super().teardown(trainer, pl_module, stage)  # a background rollout ends first
        if (
            self._loop is not None
            and not self._loop.is_closed()
            and stage in ("fit", "validate", "test")
        ):
            backend = getattr(self.executor, "backend", None)
            close = getattr(backend, "aclose", None)
            if close is not None:
                self._loop.run_until_complete(close())

    # -- checkpoint ------------------------------------------------------------------------------

    def state_dict(self) -> dict[str, Any]:
        return {**super().state_dict(), "group_size": self.group_size, "seed": self.seed}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        super().load_state_dict(state_dict)
        if state_dict.get("group_size", self.group_size) != self.group_size:
            raise ValueError(
                f"RolloutCallback: the checkpoint was trained with group_size "
                f"{state_dict['group_size']}, this run has {self.group_size}"
            )


def _check_settings(
    *,
    group_size: int,
    max_turns: int,
    max_context_tokens: int,
    max_new_tokens: int,
    temperature: float,
    top_p: float,
    top_k: int,
    std_scale: str,
    zero_variance: str,
    execution_timeout_s: float | None,
    hf_batch_size: int | None,
    samples_to_log: int,
) -> None:
    """Refuse settings that would fail, or silently train on nothing, only after a rollout."""

    def bad(name: str, value: Any, allowed: str) -> ValueError:
        return ValueError(f"RolloutCallback: {name} must be {allowed}, got {value!r}")

    if group_size < 2:
        # A group of one is its own mean: every advantage is 0 and nothing is learned.
        raise bad("group_size", group_size, ">= 2 (advantages are relative to the task's group)")
    for name, value in (
        ("max_turns", max_turns),
        ("max_context_tokens", max_context_tokens),
        ("max_new_tokens", max_new_tokens),
    ):
        if value < 1:
            raise bad(name, value, ">= 1")
    if max_new_tokens > max_context_tokens:
        raise bad("max_new_tokens", max_new_tokens, f"<= max_context_tokens ({max_context_tokens})")
    if not temperature > 0.0:  # greedy groups are G copies of one episode: no advantage
        raise bad("temperature", temperature, "> 0 (training samples; validation is greedy)")
    if not 0.0 < top_p <= 1.0:
        raise bad("top_p", top_p, "in (0, 1]")
    if top_k < 0:
        raise bad("top_k", top_k, ">= 0 (0: off)")
    if std_scale not in ("group", "batch", "none"):
        raise bad("std_scale", std_scale, "one of 'group', 'batch', 'none'")
    if zero_variance not in ("keep", "drop"):
        raise bad("zero_variance", zero_variance, "one of 'keep', 'drop'")
    if execution_timeout_s is not None and not execution_timeout_s > 0.0:
        raise bad("execution_timeout_s", execution_timeout_s, "> 0, or null for no limit")
    if hf_batch_size is not None and hf_batch_size < 1:
        raise bad("hf_batch_size", hf_batch_size, ">= 1, or null for the engine's default")
    if samples_to_log < 0:
        raise bad("samples_to_log", samples_to_log, ">= 0")


_COUNTERS = ("calls", "requests", "retries", "failures")


def _backend_metrics(prefix: str, now: BackendStats, seen: BackendStats) -> dict[str, float]:
    """The backend's counters between two snapshots, named ``{prefix}/calls`` etc."""
    metrics = {f"{prefix}/{n}": float(getattr(now, n) - getattr(seen, n)) for n in _COUNTERS}
    # A faulty request was either retried or ended its call as a failure.
    metrics[f"{prefix}/faults"] = metrics[f"{prefix}/retries"] + metrics[f"{prefix}/failures"]
    return metrics


def _eos_ids(model: Any, tokenizer: Any) -> tuple[int, ...]:
    """The model's EOS ids (generation config, then tokenizer): what vLLM's grammar backend
    admits as the end of a constrained turn."""
    config = getattr(model, "generation_config", None)
    ids = getattr(config, "eos_token_id", None)
    ids = [ids] if isinstance(ids, int) else list(ids or [])
    if tokenizer.eos_token_id is not None:
        ids.append(tokenizer.eos_token_id)
    return tuple(dict.fromkeys(int(i) for i in ids))


def _reduce(name: str) -> str:
    counts = (
        "backend/",
        "rollout/episodes",
        "rollout/failed_episodes",
        "rollout/zero_variance_groups",
    )
    return "sum" if name.startswith(counts) or "/backend/" in name else "mean"


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")
