"""`ExpertDataModule`: the synthetic expert episodes of the warm start (`flowsteer sft`).

In `setup` it reads the task files, draws the expert scripts and plays them through the real
canvas (`flowsteer.rollout.expert`), so each episode is a `Trajectory` exactly as an RL episode
would be (same chat template, same masks). The loader yields `RolloutBatch`es of them in a seeded
shuffled order. A bad setting (no episodes, a library that cannot meet the finish constraints, a
turn limit too small) fails here, before the first step, with one line.
"""

from __future__ import annotations

import asyncio
from functools import partial
from pathlib import Path

import lightning as L
import torch
from lightning.pytorch.utilities import rank_zero_info
from torch.utils.data import DataLoader

from datamodules.task_datamodule import TaskFile
from flowsteer.canvas.execution import Executor
from flowsteer.canvas.finish import FinishConstraints
from flowsteer.operators.library import OperatorLibrary
from flowsteer.rollout.batch import RolloutBatch, collate
from flowsteer.rollout.chat import ChatFormat
from flowsteer.rollout.expert import SHAPES, ExpertPlanner, expert_trajectories
from flowsteer.rollout.trajectory import Trajectory
from flowsteer.tasks import Task, read_tasks

_EXAMPLES = Path(__file__).resolve().parents[1] / "flowsteer" / "examples" / "data"
DEFAULT_TASKS = (
    TaskFile("gsm8k", str(_EXAMPLES / "gsm8k_sample.jsonl")),
    TaskFile("humaneval", str(_EXAMPLES / "humaneval_sample.jsonl")),
)


class ExpertDataModule(L.LightningDataModule):
    """Expert episodes built from the operator library, played on the canvas, as batches.

    Args:
        tokenizer: The policy's model directory (its tokenizer and chat template render the
            episodes); the ``sft`` command fills it from ``model.policy.init_args.model``.
        train: Task files whose questions the expert episodes are about; ``None``: the
            bundled GSM8K and HumanEval samples.
        num_episodes: Expert episodes in the set (tasks are cycled).
        shapes: Workflow shapes to draw from: ``chain``, ``parallel``, ``conditional``,
            ``loop`` (those the finish constraints rule out are dropped).
        finish_constraints: What ``finish`` requires; use the RL run's constraints.
        library: An operator library file (YAML/JSON); ``None``: the default twelve.
        executor: Runs each workflow after every completed edit, so the observations show an
            execution; ``None``: structure-only observations. A cheap backend (e.g. a
            `ScriptedBackend`) is enough: observations are context, never trained on.
        max_turns: The canvas's turn limit (use the RL run's).
        max_context_tokens: Longest episode in tokens.
        max_new_tokens: Longest expert turn in tokens (use the RL run's per-turn budget).
        think_rate: Share of add and finish turns that begin with a short thought.
        default_prompt_rate: Share of node prompts left empty (the operator's default).
        enable_thinking: Passed to the chat template (Qwen3); use the RL run's.
        batch_size: Episodes per optimizer step.
        seed: Fixes the expert set and its order.
    """

    def __init__(
        self,
        tokenizer: str,
        train: list[TaskFile] | None = None,
        num_episodes: int = 64,
        shapes: list[str] | None = None,
        finish_constraints: FinishConstraints | None = None,
        library: str | None = None,
        executor: Executor | None = None,
        max_turns: int = 20,
        max_context_tokens: int = 16384,
        max_new_tokens: int = 1024,
        think_rate: float = 0.3,
        default_prompt_rate: float = 0.2,
        enable_thinking: bool | None = None,
        batch_size: int = 1,
        seed: int = 0,
    ) -> None:
        super().__init__()
        if num_episodes < 1:
            raise ValueError(
                f"ExpertDataModule: num_episodes must be >= 1, got {num_episodes} "
                "(an empty expert set)"
            )
        if batch_size < 1:
            raise ValueError(f"ExpertDataModule: batch_size must be >= 1, got {batch_size}")
        if train is not None and not train:
            raise ValueError("ExpertDataModule: train is empty; list task files or leave it out")
        self.tokenizer = tokenizer
        self.train_files = list(train) if train is not None else list(DEFAULT_TASKS)
        self.num_episodes = num_episodes
        self.shapes = list(shapes) if shapes is not None else list(SHAPES)
        self.finish_constraints = finish_constraints or FinishConstraints()
        self.library = library
        self.executor = executor
        self.max_turns = max_turns
        self.max_context_tokens = max_context_tokens
        self.max_new_tokens = max_new_tokens
        self.think_rate = think_rate
        self.default_prompt_rate = default_prompt_rate
        self.enable_thinking = enable_thinking
        self.batch_size = batch_size
        self.seed = seed
        self.trajectories: list[Trajectory] = []
        self.pad_token_id = 0

    def setup(self, stage: str | None = None) -> None:
        """Read the tasks and build the expert set (once; every rank builds the same)."""
        if self.trajectories:
            return
        from transformers import AutoTokenizer

        try:
            library = (
                OperatorLibrary.default()
                if self.library is None
                else OperatorLibrary.from_file(self.library)
            )
            planner = ExpertPlanner(
                library,
                self.finish_constraints,
                max_turns=self.max_turns,
                shapes=self.shapes,
                think_rate=self.think_rate,
                default_prompt_rate=self.default_prompt_rate,
                seed=self.seed,
            )
        except (ValueError, OSError) as err:
            raise ValueError(f"ExpertDataModule: {err}") from None
        tasks: list[Task] = []
        for file in self.train_files:
            result = read_tasks(file.source, file.path, file.split, file.limit)
            if not result.tasks:
                raise ValueError(f"ExpertDataModule: {file.path} ({file.source}) holds no tasks")
            tasks.extend(result.tasks)
        tokenizer = AutoTokenizer.from_pretrained(self.tokenizer)
        pad = tokenizer.pad_token_id
        self.pad_token_id = pad if pad is not None else tokenizer.eos_token_id
        chat = ChatFormat(tokenizer, enable_thinking=self.enable_thinking)
        try:
            self.trajectories = asyncio.run(
                expert_trajectories(
                    tasks,
                    chat,
                    planner,
                    self.num_episodes,
                    executor=self.executor,
                    max_context_tokens=self.max_context_tokens,
                    max_new_tokens=self.max_new_tokens,
                )
            )
        except ValueError as err:
            raise ValueError(f"ExpertDataModule: {err}") from None
        lengths = [len(t.token_ids) for t in self.trajectories]
        rank_zero_info(
            f"expert set: {len(self.trajectories)} episodes, "
            f"{sum(lengths) / len(lengths):.0f} tokens each on average, "
            f"{sum(t.policy_tokens for t in self.trajectories)} trained tokens in all"
        )

    def train_dataloader(self) -> DataLoader:
        return DataLoader(
            self.trajectories,
            batch_size=self.batch_size,
            shuffle=True,
            generator=torch.Generator().manual_seed(self.seed),
            collate_fn=partial(_collate, pad_token_id=self.pad_token_id),
        )


def _collate(trajectories: list[Trajectory], pad_token_id: int) -> RolloutBatch:
    """The RL collation; advantages are unused by the SFT loss (zeros)."""
    return collate(trajectories, torch.zeros(len(trajectories)), pad_token_id)


__all__ = ["DEFAULT_TASKS", "ExpertDataModule"]
