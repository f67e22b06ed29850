"""The policy side of an evaluation: load a policy, play one greedy episode per task, and turn
each finished episode into an `EpisodeRecord` (torch is imported inside the functions, so the
evaluation package stays importable without it).

`PolicyPlayer` keeps up to ``concurrency`` episodes in flight: every round, one
``Engine.generate`` call serves all of them, their canvas steps are awaited together, and a new
task takes the place of each episode that ends (scored in the background). Seeds are derived
from (seed, the task's index in the evaluation set, turn), not from the order of play, so an
evaluation resumed after a kill samples what the uninterrupted one would have.
"""

from __future__ import annotations

import asyncio
import math
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any

from flowsteer.evaluation.record import EpisodeRecord
from flowsteer.evaluation.scoring import score_record
from flowsteer.tasks import Task


def load_policy_model(
    model: str,
    *,
    adapter: str | None = None,
    checkpoint: str | None = None,
    lora: dict[str, Any] | None = None,
    dtype: str = "float32",
) -> tuple[Any, Any, Any]:
    """(model in eval mode, tokenizer, `Policy`) of a model dir, plus a LoRA adapter or a fit
    checkpoint (the model is the policy's, wrapped in the adapter when one is given).

    Args:
        model: The base model directory (or a name in the local Hugging Face cache).
        adapter: A peft LoRA adapter directory to load on top.
        checkpoint: A ``flowsteer fit`` checkpoint whose ``policy.*`` weights are loaded.
        lora: The LoRA settings the checkpoint was trained with (from its config), if any.
        dtype: Weight dtype.
    """
    import torch

    from flowsteer.rl.policy import LoraSettings, Policy

    settings = None
    if lora is not None:
        lora = dict(lora)
        if "target_modules" in lora:
            lora["target_modules"] = tuple(lora["target_modules"])
        settings = LoraSettings(**lora)
    policy = Policy(model, dtype=dtype, lora=settings)  # type: ignore[arg-type]
    lm = policy.model
    if checkpoint is not None:
        try:
            state = torch.load(checkpoint, map_location="cpu", weights_only=False)["state_dict"]
        except (OSError, KeyError, RuntimeError) as err:
            raise ValueError(
                f"--ckpt_path {checkpoint}: not a flowsteer fit checkpoint ({err})"
            ) from None
        mine = {k.removeprefix("policy."): v for k, v in state.items() if k.startswith("policy.")}
        if not mine:
            raise ValueError(f"--ckpt_path {checkpoint}: holds no policy weights")
        missing, unexpected = policy.load_state_dict(mine, strict=False)
        missing = [k for k in missing if not k.startswith("reference_model.")]
        if missing or unexpected:
            raise ValueError(
                f"--ckpt_path {checkpoint}: does not fit the policy built from its config "
                f"(missing {missing[:3]}, unexpected {unexpected[:3]}); check --config"
            )
    if adapter is not None:
        if not (Path(adapter) / "adapter_config.json").is_file():
            raise FileNotFoundError(f"--adapter {adapter}: no adapter_config.json there")
        from peft import PeftModel

        lm = PeftModel.from_pretrained(lm, adapter)
    lm.eval()
    return lm, policy.tokenizer, policy


async def build_engine(
    kind: str,
    loaded: tuple[Any, Any, Any],
    init_args: dict[str, Any],
    batch_size: int | None,
    *,
    base_model: str,
    weights_changed: bool,
    adapter: str | None = None,
) -> Any:
    """``hf``: `HFEngine` on the loaded model. Anything else is an engine class path (e.g.
    ``flowsteer.rollout.VLLMEngine``) built with ``init_args`` (``model`` defaults to the base
    model); when a checkpoint changed the weights, they are pushed with ``sync_weights``."""
    import inspect

    lm, tokenizer, policy = loaded
    if kind == "hf":
        from flowsteer.rollout.hf_engine import HFEngine

        return HFEngine(lm, tokenizer, batch_size=batch_size)
    from flowsteer.evaluation.fit_config import import_class

    if adapter is not None:
        raise ValueError(
            f"--engine {kind} with --adapter: merge the adapter into a model directory first "
            "(peft merge_and_unload), or use --engine hf"
        )
    cls = import_class(kind, "--engine")
    args = dict(init_args)
    if "model" in inspect.signature(cls).parameters:
        args.setdefault("model", base_model)
    try:
        engine = cls(**args)
    except TypeError as err:
        raise ValueError(f"--engine {kind}: bad --engine-args ({err})") from None
    start = getattr(engine, "start", None)
    if start is not None:  # engines that build lazily (VLLMEngine): one process, one rank
        start()
    if weights_changed:
        await engine.sync_weights(policy, 1)
    return engine


OnDone = Callable[[EpisodeRecord], Awaitable[None]]


class PolicyPlayer:
    """Plays one episode per task with a `RolloutRunner` and hands back scored records.

    Args:
        runner: The runner (engine, tokenizer, executor, reward, sampling, turn limits).
        system: The record's system name (``policy`` or ``untrained``).
        concurrency: Most episodes in flight.
        seed: Seeds every request (with the task index and the turn).
    """

    def __init__(self, runner: Any, system: str, concurrency: int = 8, seed: int = 0) -> None:
        if concurrency < 1:
            raise ValueError(f"concurrency must be >= 1, got {concurrency}")
        self.runner = runner
        self.system = system
        self.concurrency = concurrency
        self.seed = seed

    async def play(self, items: Sequence[tuple[int, Task]], on_done: OnDone) -> None:
        """Play every (index, task); ``on_done`` gets each scored record as it finishes."""
        from flowsteer.rollout.engine import Generation
        from flowsteer.rollout.runner import request_seed

        pending = deque(items)
        active: dict[int, list[Any]] = {}  # index -> [episode, turns played]
        scoring: list[asyncio.Task[None]] = []

        async def finish(index: int, episode: Any) -> None:
            await on_done(await self._record(index, episode))

        while pending or active:
            while pending and len(active) < self.concurrency:
                index, task = pending.popleft()
                episode = self.runner.episode(task, index)
                if episode.done:
                    scoring.append(asyncio.ensure_future(finish(index, episode)))
                else:
                    active[index] = [episode, 0]
            if not active:
                break
            order = list(active)
            requests = [
                active[i][0].request(self.runner.sampling, request_seed(self.seed, i, active[i][1]))
                for i in order
            ]
            try:
                generations = await self.runner.engine.generate(requests)
                if len(generations) != len(requests):
                    raise RuntimeError(
                        f"engine returned {len(generations)} generations for {len(requests)}"
                    )
            except Exception as exc:  # fail these episodes, not the evaluation
                why = f"{type(exc).__name__}: {exc}"
                generations = [Generation([], [], "abort", why) for _ in requests]
            await asyncio.gather(
                *(active[i][0].play(g) for i, g in zip(order, generations, strict=True))
            )
            for i in order:
                active[i][1] += 1
                if active[i][0].done:
                    episode = active.pop(i)[0]
                    scoring.append(asyncio.ensure_future(finish(i, episode)))
        await asyncio.gather(*scoring)

    async def _record(self, index: int, episode: Any) -> EpisodeRecord:
        trajectory = await episode.score(self.runner.reward)
        graph = episode.canvas.graph
        record = EpisodeRecord(
            system=self.system,
            index=index,
            task_id=trajectory.task_id,
            source=trajectory.source,
            kind=episode.task.kind,
            actions=list(episode.turn_texts),
            observations=list(episode.observations),
            dsl=graph.to_dsl() if len(graph) else "",
            workflow_json=graph.to_json() if len(graph) else "",
            answer=trajectory.answer,
            reward=None if math.isnan(trajectory.reward) else trajectory.reward,
            reward_components={
                k: v for k, v in trajectory.reward_components.items() if not math.isnan(v)
            },
            turns=trajectory.turns,
            policy_tokens=trajectory.policy_tokens,
            backend_calls=trajectory.backend_calls,
            backend_tokens=trajectory.backend_tokens,
            finished=trajectory.finished,
            error=trajectory.error,
        )
        return await score_record(record, episode.task)


__all__ = ["PolicyPlayer", "build_engine", "load_policy_model"]
