"""`FlowDirector`: a chat policy building a workflow on the canvas, turn by turn, as text.

This is how a trained Flow-Director is *used*: the policy is any `LLMBackend` (a vLLM or other
OpenAI-compatible server, or a local transformers model), the canvas gives it the task and
structured feedback, and the episode ends at ``finish`` or after ``max_turns``. Training rollouts
need token-level bookkeeping (log-probs, masks) and live on the torch side; this loop is the
text-level view of the same episode, so it imports no torch.

A policy that cannot be reached (no server, a bad key) does not raise from `FlowDirector.run`
(a batch of episodes should not die with one): the episode stops, `Episode.error` says why,
a warning is logged, and `Episode.raise_for_error()` turns it into an `EpisodeError` for
scripts that want to stop there.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from flowsteer.canvas import (
    Canvas,
    ExecutionResult,
    Executor,
    FinishConstraints,
    StepInfo,
    WorkflowGraph,
)
from flowsteer.llm.backend import LLMBackend, Message
from flowsteer.operators.library import OperatorLibrary
from flowsteer.tasks import Task

log = logging.getLogger(__name__)


class EpisodeError(RuntimeError):
    """An episode that stopped early; the message says at which turn and why."""


@dataclass(frozen=True)
class Turn:
    """One policy turn: what the policy wrote and what the canvas answered."""

    action: str
    observation: str
    info: StepInfo


@dataclass
class Episode:
    """A finished (or truncated) episode of one task.

    Attributes:
        task: The task.
        turns: Every policy turn, in order.
        graph: The final workflow.
        result: The final workflow's own execution (`Canvas.final_result`): ``None`` for an
            empty workflow or without an executor.
        answer: The final workflow's answer (``result.answer``; ``None`` if there is none).
        library: The operator library the canvas used; score R_div with it
            (``reward(task, graph, answer, library=episode.library)``).
        finished: The policy ended with an accepted ``finish``.
        truncated: The episode hit ``max_turns`` without ``finish``.
        error: Why the episode stopped early (a policy backend failure), if it did.
    """

    task: Task
    turns: list[Turn] = field(default_factory=list)
    graph: WorkflowGraph = field(default_factory=WorkflowGraph)
    result: ExecutionResult | None = None
    answer: str | None = None
    library: OperatorLibrary | None = None
    finished: bool = False
    truncated: bool = False
    error: str | None = None

    @property
    def valid_actions(self) -> int:
        """Turns whose action the canvas accepted."""
        return sum(1 for t in self.turns if t.info.valid)

    def raise_for_error(self) -> Episode:
        """Raise `EpisodeError` if the episode stopped early; else return the episode."""
        if self.error is not None:
            raise EpisodeError(f"episode of task {self.task.id!r} stopped: {self.error}")
        return self


class FlowDirector:
    """Runs a chat policy on the canvas until it finishes a workflow.

    Args:
        policy: The Flow-Director, as a chat backend.
        executor: Runs the workflow after every completed edit (``None``: structure only).
        library: Operators the policy may use; ``None``: the default twelve.
        max_turns: Policy turns per episode.
        finish_constraints: What ``finish`` requires.
        temperature: Policy sampling temperature (``None``: the backend's default).
        max_tokens: Most tokens per policy turn (``None``: the backend's default).
        seed: Makes sampling reproducible: turn t samples with seed ``seed + t`` (a fixed seed
            for every turn would correlate the turns); ``None``: unseeded.
    """

    def __init__(
        self,
        policy: LLMBackend,
        executor: Executor | None = None,
        library: OperatorLibrary | None = None,
        max_turns: int = 20,
        finish_constraints: FinishConstraints | None = None,
        temperature: float | None = None,
        max_tokens: int | None = None,
        seed: int | None = None,
    ) -> None:
        self.policy = policy
        self.executor = executor
        self.library = library
        self.max_turns = max_turns
        self.finish_constraints = finish_constraints
        self.seed = seed
        self.sampling = {
            k: v
            for k, v in (("temperature", temperature), ("max_tokens", max_tokens))
            if v is not None
        }

    def canvas(self, task: Task) -> Canvas:
        """A fresh canvas for ``task`` with this director's settings."""
        return Canvas(
            task,
            executor=self.executor,
            library=self.library,
            max_turns=self.max_turns,
            finish_constraints=self.finish_constraints,
        )

    async def run(self, task: Task) -> Episode:
        """Play one episode; never raises on anything the policy or the canvas does."""
        canvas = self.canvas(task)
        messages: list[Message] = [
            {"role": "system", "content": canvas.system_prompt()},
            {"role": "user", "content": canvas.reset()},
        ]
        episode = Episode(task)
        while not canvas.done:
            sampling = dict(self.sampling)
            if self.seed is not None:
                sampling["seed"] = self.seed + canvas.turn
            reply = await self.policy.complete(messages, **sampling)
            if not reply.ok:
                episode.error = f"policy failed at turn {canvas.turn + 1}: {reply.error}"
                log.warning("task %s: %s", task.id, episode.error)
                break
            result = await canvas.step(reply.text)
            episode.turns.append(Turn(reply.text, result.observation, result.info))
            messages += [
                {"role": "assistant", "content": reply.text},
                {"role": "user", "content": result.observation},
            ]
        episode.graph = canvas.graph
        episode.library = canvas.library
        episode.result = await canvas.final_result()
        episode.answer = episode.result.answer if episode.result is not None else None
        episode.truncated = canvas.truncated
        episode.finished = canvas.done and not canvas.truncated and episode.error is None
        return episode
