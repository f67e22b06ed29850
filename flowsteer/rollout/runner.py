"""`RolloutRunner`: many tasks × G samples on the canvas in lockstep, one engine call per turn.

Every turn, the runner asks each active episode for its request and sends them all to the engine
in ONE ``generate`` call; the canvas steps of all episodes are then awaited concurrently (their
workflow executions overlap). Episodes that end are scored at once in the background (rewards
run in worker threads), overlapping the next turns of the others.

Seeds: with ``seed`` set, request (episode i, turn t) gets a seed derived from (seed, i, t) by a
fixed hash, so a run is reproducible and no two turns share a random stream.

Failures: an engine that aborts a request (or raises) ends those episodes with ``error`` set and
reward NaN; they are returned in place (the order never shifts) and must be dropped before
advantages are computed (`collate` refuses them).
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Callable, Sequence
from typing import Any

from flowsteer.canvas.canvas import Canvas, FinishConstraints
from flowsteer.canvas.execution import Executor
from flowsteer.operators.library import OperatorLibrary
from flowsteer.rewards.workflow_reward import WorkflowReward
from flowsteer.rollout.action_grammar import ActionGrammar
from flowsteer.rollout.chat import ChatFormat
from flowsteer.rollout.engine import Engine, Generation, SamplingParams
from flowsteer.rollout.episode import RolloutEpisode
from flowsteer.rollout.trajectory import Trajectory
from flowsteer.tasks import Task

DEFAULT_SAMPLING = SamplingParams()  # frozen, so one shared default is safe


def request_seed(seed: int, episode: int, turn: int) -> int:
    """The seed of episode ``episode``'s turn ``turn`` in a run seeded with ``seed`` (31 bits)."""
    digest = hashlib.blake2b(f"{seed}/{episode}/{turn}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") & 0x7FFFFFFF


class RolloutRunner:
    """Plays groups of episodes with an engine and scores them.

    Args:
        engine: Samples the policy's turns.
        tokenizer: The policy's tokenizer (its chat template builds the conversation).
        executor: Runs each workflow after every completed edit; ``None``: structure only.
        reward: R(τ) of a finished episode.
        library: Operators the policy may use; ``None``: the default twelve.
        max_turns: Policy turns per episode (paper: 20).
        max_context_tokens: Longest conversation in tokens (paper: 16,384).
        sampling: Sampling settings of every turn (``seed`` and ``stop_token_ids`` are set per
            request; the chat's end-of-turn id is always a stop token).
        finish_constraints: What ``finish`` requires.
        execution_timeout_s: Wall-clock limit of one workflow execution.
        enable_thinking: Passed to the chat template (Qwen3); ``None``: its default.
        min_turn_tokens: Fewest tokens a turn must be able to sample; an episode whose next
            observation plus this many tokens no longer fits ends ``context_truncated``
            (capped at ``sampling.max_tokens``).
        grammar: Constrains every turn to an action the canvas accepts (`ActionGrammar`);
            ``None``: the policy writes free text.
    """

    def __init__(
        self,
        engine: Engine,
        tokenizer: Any,
        executor: Executor | None,
        reward: WorkflowReward,
        *,
        library: OperatorLibrary | None = None,
        max_turns: int = 20,
        max_context_tokens: int = 16384,
        sampling: SamplingParams = DEFAULT_SAMPLING,
        finish_constraints: FinishConstraints | None = None,
        execution_timeout_s: float | None = None,
        enable_thinking: bool | None = None,
        min_turn_tokens: int = 32,
        grammar: ActionGrammar | None = None,
    ) -> None:
        if max_context_tokens < 2:
            raise ValueError(f"max_context_tokens must be at least 2, got {max_context_tokens}")
        if sampling.max_tokens < 1:
            raise ValueError(f"sampling.max_tokens must be at least 1, got {sampling.max_tokens}")
        self.engine = engine
        self.tokenizer = tokenizer
        self.executor = executor
        self.reward = reward
        self.library = library
        self.max_turns = max_turns
        self.max_context_tokens = max_context_tokens
        self.sampling = sampling
        self.finish_constraints = finish_constraints
        self.execution_timeout_s = execution_timeout_s
        self.chat = ChatFormat(tokenizer, enable_thinking=enable_thinking)
        self.min_turn_tokens = min(min_turn_tokens, sampling.max_tokens)
        self.grammar = grammar

    def episode(self, task: Task, group_id: int = 0) -> RolloutEpisode:
        """A fresh episode of ``task`` with this runner's settings."""
        canvas = Canvas(
            task,
            executor=self.executor,
            library=self.library,
            max_turns=self.max_turns,
            finish_constraints=self.finish_constraints,
            execution_timeout_s=self.execution_timeout_s,
        )
        return RolloutEpisode(
            canvas,
            self.chat,
            group_id=group_id,
            max_context_tokens=self.max_context_tokens,
            min_turn_tokens=self.min_turn_tokens,
            grammar=self.grammar,
        )

    async def run(
        self,
        tasks: Sequence[Task],
        group_size: int,
        *,
        seed: int | None = None,
        on_episode_done: Callable[[Trajectory], None] | None = None,
    ) -> list[Trajectory]:
        """Play ``group_size`` episodes of every task; one trajectory per episode.

        Returns:
            ``len(tasks) * group_size`` trajectories ordered by (task, sample); ``group_id`` is
            the task's index in ``tasks``.
        """
        if group_size < 1:
            raise ValueError(f"group_size must be at least 1, got {group_size}")
        version = self.engine.weights_version
        episodes = [
            self.episode(task, g) for g, task in enumerate(tasks) for _ in range(group_size)
        ]
        scoring: dict[int, asyncio.Task[Trajectory]] = {}

        async def score(i: int) -> Trajectory:
            trajectory = await episodes[i].score(self.reward, version)
            if on_episode_done is not None:
                on_episode_done(trajectory)
            return trajectory

        def settle() -> None:
            for i, ep in enumerate(episodes):
                if ep.done and i not in scoring:
                    scoring[i] = asyncio.ensure_future(score(i))

        settle()
        turn = 0
        while active := [i for i, ep in enumerate(episodes) if not ep.done]:
            requests = [
                episodes[i].request(
                    self.sampling, None if seed is None else request_seed(seed, i, turn)
                )
                for i in active
            ]
            try:
                generations = await self.engine.generate(requests)
                if len(generations) != len(requests):
                    raise RuntimeError(
                        f"engine returned {len(generations)} generations for {len(requests)} "
                        "requests"
                    )
            except Exception as exc:  # the engine is a collaborator: fail its episodes, not us
                why = f"{type(exc).__name__}: {exc}"
                generations = [Generation([], [], "abort", why) for _ in requests]
            await asyncio.gather(
                *(episodes[i].play(g) for i, g in zip(active, generations, strict=True))
            )
            settle()
            turn += 1
        return list(await asyncio.gather(*(scoring[i] for i in range(len(episodes)))))


__all__ = ["RolloutRunner", "request_seed"]
