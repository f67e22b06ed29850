"""`RolloutEpisode`: one episode's token-level state, driving the text-in/text-out `Canvas`.

The training sequence is built from ids only (see `flowsteer.rollout.trajectory` for the
conventions): the first prompt, then per turn the ids the engine sampled (mask 1, with their
log-probs, the sampled end-of-turn id included) and the observation the canvas answered (mask 0).
The decoded text of a turn goes to the canvas; it is never re-tokenised into the sequence.

Context budget. The sequence never exceeds ``max_context_tokens``. A turn may sample at most
``min(sampling.max_tokens, room - 1)`` tokens, where ``room`` is what is left of the context: one
slot stays free for the end-of-turn id the environment appends when a turn is cut at its limit.
Before an observation is appended, the episode checks that the observation plus a minimum turn
(``min_turn_tokens`` sampled tokens and that one slot) still fits; if not, the episode ends
there, flagged ``context_truncated`` (and ``truncated``), without the observation, so the
sequence ends on the policy's own last turn. The same check applies to the first prompt.

Constrained decoding. With an `ActionGrammar`, each request carries the grammar of the canvas's
current state sized to the turn's token budget (`ActionConstraint`), so every turn parses and
the canvas accepts it. Such a request also stops on the grammar's extra stop ids (the model's
EOS ids, `ActionGrammar.stop_token_ids`): vLLM's grammar backend admits every EOS id as an end of
the grammar (it adds them to each request's stop set, ``ignore_eos`` or not), so all engines end
and renormalise over the same stop tokens. A turn ended by such an id gets the end-of-turn id
appended (mask 0), as a turn cut at its budget does, and that id is not in the text the canvas
reads.
"""

from __future__ import annotations

import asyncio
import math
from dataclasses import replace

from flowsteer.canvas.canvas import Canvas
from flowsteer.canvas.execution import ExecutionResult
from flowsteer.rewards.workflow_reward import WorkflowReward
from flowsteer.rollout.action_grammar import ActionGrammar
from flowsteer.rollout.chat import ChatFormat
from flowsteer.rollout.engine import Generation, GenerationRequest, SamplingParams
from flowsteer.rollout.trajectory import Trajectory
from flowsteer.tasks import Task


class RolloutEpisode:
    """One episode of one task as exact token ids, loss mask and engine log-probs.

    Args:
        canvas: A fresh canvas for the task (the episode resets it).
        chat: The chat template pieces.
        group_id: The task's index in the rollout.
        max_context_tokens: Longest sequence the episode may build.
        min_turn_tokens: Fewest tokens a turn must be able to sample for it to be played.
        grammar: Constrains every turn to an action the canvas accepts; ``None``: free text.
    """

    def __init__(
        self,
        canvas: Canvas,
        chat: ChatFormat,
        *,
        group_id: int = 0,
        max_context_tokens: int = 16384,
        min_turn_tokens: int = 32,
        grammar: ActionGrammar | None = None,
    ) -> None:
        if min_turn_tokens < 1:
            raise ValueError(f"min_turn_tokens must be at least 1, got {min_turn_tokens}")
        self.canvas = canvas
        self.chat = chat
        self.group_id = group_id
        self.max_context_tokens = max_context_tokens
        self.min_turn_tokens = min_turn_tokens
        self.grammar = grammar
        self._grammar_stops = tuple(
            t for t in (grammar.stop_token_ids if grammar else ()) if t != chat.end_of_turn_id
        )
        self._mass_sum = 0.0
        self._mass_tokens = 0
        first_user = canvas.reset()
        self.token_ids: list[int] = chat.prompt_ids(canvas.system_prompt(), first_user)
        self.loss_mask: list[int] = [0] * len(self.token_ids)
        self.logprobs: list[float] = [0.0] * len(self.token_ids)
        self.turn_texts: list[str] = []
        self.observations: list[str] = [first_user]
        self.invalid_actions = 0
        self.backend_calls = 0
        self.backend_tokens = 0
        self.context_truncated = False
        self.error: str | None = None
        self._over = False
        if not self._fits(0):
            self._end_for_context()

    # ------------------------------------------------------------------ state
    @property
    def task(self) -> Task:
        return self.canvas.task

    @property
    def done(self) -> bool:
        """No further turn will be played."""
        return self._over or self.canvas.done

    @property
    def finished(self) -> bool:
        """Ended with an accepted ``finish``."""
        return self.canvas.done and not self.canvas.truncated and self.error is None

    @property
    def truncated(self) -> bool:
        """Ended at ``max_turns`` or at the context limit without ``finish``."""
        return self.error is None and (self.canvas.truncated or self.context_truncated)

    def _fits(self, extra: int) -> bool:
        """Whether ``extra`` more tokens plus a minimal turn still fit in the context."""
        return len(self.token_ids) + extra + self.min_turn_tokens + 1 <= self.max_context_tokens

    def _end_for_context(self) -> None:
        self.context_truncated = True
        self._over = True

    # ------------------------------------------------------------------- turns
    def request(self, sampling: SamplingParams, seed: int | None) -> GenerationRequest:
        """The next turn's request: the whole conversation so far, with the turn's token
        budget cut to what the context has room for and the end-of-turn id as a stop token."""
        if self.done:
            raise RuntimeError("the episode is over; no further turn can be requested")
        room = self.max_context_tokens - len(self.token_ids) - 1
        stops = sampling.stop_token_ids
        if self.chat.end_of_turn_id not in stops:
            stops = (*stops, self.chat.end_of_turn_id)
        stops = (*stops, *(t for t in self._grammar_stops if t not in stops))
        params = replace(
            sampling, max_tokens=min(sampling.max_tokens, room), stop_token_ids=stops, seed=seed
        )
        constraint = None
        if self.grammar is not None:
            constraint = self.grammar.for_canvas(self.canvas, params.max_tokens)
        return GenerationRequest(
            prompt_ids=list(self.token_ids), sampling=params, constraint=constraint
        )

    async def play(self, generation: Generation) -> None:
        """Append the engine's turn, let the canvas act on its text, append the observation."""
        if generation.finish_reason == "abort" or len(generation.token_ids) != len(
            generation.logprobs
        ):
            why = generation.error or "token_ids and logprobs differ in length"
            self.error = f"engine failed at turn {self.canvas.turn + 1}: {why}"
            self._over = True
            return
        ids = list(generation.token_ids)
        if generation.constraint_mass is not None and ids:
            self._mass_sum += generation.constraint_mass * len(ids)
            self._mass_tokens += len(ids)
        self.token_ids += ids
        self.loss_mask += [1] * len(ids)
        self.logprobs += [float(x) for x in generation.logprobs]
        if not ids or ids[-1] != self.chat.end_of_turn_id:
            # Cut at its token limit: the environment closes the turn; the policy did not say it.
            self.token_ids.append(self.chat.end_of_turn_id)
            self.loss_mask.append(0)
            self.logprobs.append(0.0)
        text = self.chat.decode_turn(ids[:-1] if ids and ids[-1] in self._grammar_stops else ids)
        self.turn_texts.append(text)
        result = await self.canvas.step(text)
        if not result.info.valid:
            self.invalid_actions += 1
        if result.info.executed and result.info.result is not None:
            self._count(result.info.result)
        if result.done:
            return
        observation = self.chat.observation_ids(result.observation)
        if not self._fits(len(observation)):
            self._end_for_context()
            return
        self.observations.append(result.observation)
        self.token_ids += observation
        self.loss_mask += [0] * len(observation)
        self.logprobs += [0.0] * len(observation)

    def _count(self, result: ExecutionResult) -> None:
        self.backend_calls += result.calls
        self.backend_tokens += result.tokens

    # ------------------------------------------------------------------ scoring
    async def score(self, reward: WorkflowReward, weights_version: int = 0) -> Trajectory:
        """The finished episode as a `Trajectory`.

        The answer is ``await canvas.final_result()``; the reward runs in a worker thread (code
        answers run the sandbox). An episode that stopped on an engine failure is not scored:
        its reward is NaN and ``error`` says why, so a trainer that forgets to drop it fails
        loudly instead of learning from a made-up score (`collate` refuses it).
        """
        answer: str | None = None
        components: dict[str, float] = {}
        total = math.nan
        if self.error is None:
            before = self.canvas.last_result
            try:
                final = await self.canvas.final_result()
                if final is not None and final is not before:
                    self._count(final)  # final_result ran the workflow again
                answer = final.answer if final is not None else None
                out = await asyncio.to_thread(
                    reward,
                    self.task,
                    self.canvas.graph,
                    answer,
                    truncated=self.truncated,
                    library=self.canvas.library,  # R_div reads categories from this library
                )
                total, components = out.total, dict(out.components)
            except Exception as exc:  # a scorer bug must not take the whole rollout down
                self.error = f"scoring failed: {type(exc).__name__}: {exc}"
        return Trajectory(
            token_ids=list(self.token_ids),
            loss_mask=list(self.loss_mask),
            rollout_logprobs=list(self.logprobs),
            reward=total if self.error is None else math.nan,
            reward_components=components,
            group_id=self.group_id,
            task_id=self.task.id,
            source=self.task.source,
            turns=len(self.turn_texts),
            dsl=self.canvas.graph.to_dsl(),
            answer=answer,
            finished=self.finished,
            truncated=self.truncated,
            context_truncated=self.context_truncated,
            invalid_actions=self.invalid_actions,
            backend_calls=self.backend_calls,
            backend_tokens=self.backend_tokens,
            policy_tokens=sum(self.loss_mask),
            error=self.error,
            weights_version=weights_version,
            constraint_mass=(self._mass_sum / self._mass_tokens if self._mass_tokens else math.nan),
        )


__all__ = ["RolloutEpisode"]
