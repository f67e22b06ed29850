"""`SingleTurnSource`: an example `RolloutSource` for single-turn tasks with a string reward.

Each iteration takes this rank's next ``prompts_per_iteration`` prompts from a JSONL file (one
``{"prompt": ..., ...}`` record per line, read in order and cycled), samples ``group_size``
completions of each with the engine (default: `HFEngine` on the live policy), scores every
completion with ``reward(prompt, completion, record)`` and returns the episodes; the base class
computes the advantages and fills the buffer. This is the shape of a TRL/verl GRPO task, trained
through `flowsteer fit` with the same `CWRPOModule` as the canvas episodes
(``configs/single_turn_example.yaml``).
"""

from __future__ import annotations

import asyncio
import importlib
import json
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

import lightning as L

from callbacks.rollout_source import RolloutSource
from flowsteer.rollout.engine import Engine, GenerationRequest, SamplingParams
from flowsteer.rollout.runner import request_seed
from flowsteer.rollout.trajectory import Trajectory

TextReward = Callable[[str, str, dict[str, Any]], float]


class SingleTurnSource(RolloutSource):
    """One sampled completion per episode, scored by a string reward.

    Args:
        prompts: A JSONL file of records with a ``prompt`` string (and whatever the reward
            reads, e.g. ``target``).
        reward: Import path ``package.module:function`` of a ``(prompt, completion, record) ->
            float`` reward (e.g. ``flowsteer.rewards.text_reward:contains_target``).
        prompts_per_iteration: Prompts per rank per iteration.
        group_size: Completions per prompt (G), >= 2.
        max_new_tokens: Most tokens per completion.
        min_new_tokens: Fewest tokens before the EOS may be sampled (fixed-length runs).
        temperature: Sampling temperature, > 0; the module takes its log-probs at it too.
        top_p: Nucleus mass.
        top_k: Top-k (0: off).
        engine: Samples the completions; ``None``: `HFEngine` on the live policy.
        seed: Seeds every completion (per iteration, rank and sample).
        std_scale: See `RolloutSource`.
        zero_variance: See `RolloutSource`.
    """

    def __init__(
        self,
        prompts: str,
        reward: str,
        prompts_per_iteration: int = 4,
        group_size: int = 8,
        max_new_tokens: int = 64,
        min_new_tokens: int = 0,
        temperature: float = 1.0,
        top_p: float = 1.0,
        top_k: int = 0,
        engine: Engine | None = None,
        seed: int = 0,
        std_scale: Literal["group", "batch", "none"] = "group",
        zero_variance: Literal["keep", "drop"] = "keep",
    ) -> None:
        super().__init__(std_scale=std_scale, zero_variance=zero_variance)
        if group_size < 2:
            raise ValueError(f"SingleTurnSource: group_size must be at least 2, got {group_size}")
        if prompts_per_iteration < 1:
            raise ValueError(
                f"SingleTurnSource: prompts_per_iteration must be at least 1, "
                f"got {prompts_per_iteration}"
            )
        if not (math.isfinite(temperature) and temperature > 0):
            raise ValueError(f"SingleTurnSource: temperature must be > 0, got {temperature}")
        self.records = _read_prompts(Path(prompts))
        self.reward = _import_reward(reward)
        self.prompts_per_iteration = prompts_per_iteration
        self.group_size = group_size
        self.sampling = SamplingParams(
            max_tokens=max_new_tokens,
            min_tokens=min_new_tokens,
            temperature=temperature,
            top_p=top_p,
            top_k=top_k,
        )
        self.engine = engine
        self.live_engine = engine is None
        self.seed = seed
        self._tokenizer: Any = None

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        policy = pl_module.policy
        self._tokenizer = policy.tokenizer
        eos = policy.tokenizer.eos_token_id
        self.sampling = SamplingParams(
            **{**vars(self.sampling), "stop_token_ids": () if eos is None else (int(eos),)}
        )
        if self.engine is None:
            from flowsteer.rollout.hf_engine import HFEngine

            self.engine = HFEngine(policy.model, policy.tokenizer)
        pl_module.logprob_temperature = self.sampling.logprob_temperature
        super().setup(trainer, pl_module, stage)

    def episodes_per_iteration(self, trainer: L.Trainer) -> int:
        return self.prompts_per_iteration * self.group_size

    def play(self, trainer: L.Trainer, pl_module: L.LightningModule) -> list[Trajectory]:
        assert self.engine is not None
        if not self.live_engine and self.engine.weights_version != trainer.global_step:
            raise RuntimeError(
                f"SingleTurnSource: the engine serves weights version "
                f"{self.engine.weights_version} but the policy is at step {trainer.global_step}; "
                f"add a WeightSyncCallback"
            )
        per_step = self.prompts_per_iteration * trainer.world_size
        first = trainer.current_epoch * per_step + trainer.global_rank * self.prompts_per_iteration
        picked = [
            self.records[(first + i) % len(self.records)] for i in range(self.prompts_per_iteration)
        ]
        requests, owners = [], []
        for group, record in enumerate(picked):
            ids = self._tokenizer(record["prompt"])["input_ids"]
            for sample in range(self.group_size):
                episode = (first + group) * self.group_size + sample  # unique over ranks and steps
                seed = request_seed(self.seed, episode, turn=0)
                sampling = SamplingParams(**{**vars(self.sampling), "seed": seed})
                requests.append(GenerationRequest(ids, sampling))
                owners.append((group, record, ids))
        generations = asyncio.run(self.engine.generate(requests))
        episodes = []
        for (group, record, ids), out in zip(owners, generations, strict=True):
            completion = self._tokenizer.decode(out.token_ids, skip_special_tokens=True)
            error = out.error
            reward = math.nan if error else float(self.reward(record["prompt"], completion, record))
            episodes.append(
                Trajectory(
                    token_ids=[*ids, *out.token_ids],
                    loss_mask=[0] * len(ids) + [1] * len(out.token_ids),
                    rollout_logprobs=[0.0] * len(ids) + list(out.logprobs),
                    reward=reward,
                    group_id=group,
                    task_id=str(record.get("id", group)),
                    source="single_turn",
                    turns=1,
                    policy_tokens=len(out.token_ids),
                    error=error,
                    weights_version=self.engine.weights_version,
                )
            )
        return episodes

    def on_rollout(self, trainer, pl_module, trajectories, advantages, seconds) -> None:
        rewards = [t.reward for t in trajectories if not math.isnan(t.reward)]
        lengths = [t.policy_tokens for t in trajectories]
        pl_module.log_dict(
            {
                "rollout/reward/total": sum(rewards) / max(len(rewards), 1),
                "rollout/completion_tokens": sum(lengths) / max(len(lengths), 1),
                "time/rollout_s": seconds,
            },
            on_step=False,
            on_epoch=True,
            batch_size=1,
            sync_dist=True,
        )


def _read_prompts(path: Path) -> list[dict[str, Any]]:
    if not path.is_file():
        raise ValueError(f"SingleTurnSource: prompts: no such file {path}")
    records = []
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            raise ValueError(f"SingleTurnSource: {path}:{number}: not JSON ({exc.msg})") from None
        if not isinstance(record, dict) or not isinstance(record.get("prompt"), str):
            raise ValueError(f"SingleTurnSource: {path}:{number}: needs a 'prompt' string")
        records.append(record)
    if not records:
        raise ValueError(f"SingleTurnSource: prompts: {path} holds no records")
    return records


def _import_reward(path: str) -> TextReward:
    module_name, _, name = path.partition(":")
    if not module_name or not name:
        raise ValueError(
            f"SingleTurnSource: reward must be an import path 'package.module:function', got {path!r}"
        )
    try:
        function = getattr(importlib.import_module(module_name), name)
    except (ImportError, AttributeError) as exc:
        raise ValueError(f"SingleTurnSource: reward {path!r} cannot be imported: {exc}") from None
    if not callable(function):
        raise ValueError(f"SingleTurnSource: reward {path!r} is not callable")
    return function
