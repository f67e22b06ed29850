"""`Trajectory`: one episode as exact training data (token ids, loss mask, engine log-probs).

Conventions shared by every consumer (rollout, collation, loss, trainer):

* ``token_ids[t]`` is the t-th token of the whole conversation (system prompt, task, every
  policy turn and every canvas observation), exactly as the engine saw and sampled it.
* ``loss_mask[t] == 1`` iff token t was sampled by the policy (think, action, and the
  end-of-turn token it sampled). Prompt, observation and template tokens the environment
  inserted (including an end-of-turn token appended after a turn cut at its token limit) are 0.
* ``rollout_logprobs[t]`` is the engine's sampling log-prob of token t where the mask is 1,
  and 0.0 elsewhere.
* A per-token log-prob tensor at index t always scores ``token_ids[t]`` given ``token_ids[:t]``
  (index 0 is never scored: the first token is a prompt token).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field


@dataclass
class Trajectory:
    """One finished episode of one task.

    Attributes:
        token_ids: The whole conversation, ``[T]``.
        loss_mask: 1 on tokens the policy sampled, ``[T]``.
        rollout_logprobs: Engine log-probs on mask-1 tokens, 0.0 elsewhere, ``[T]``.
        reward: The scalar R(τ) the advantages are computed from.
        reward_components: R(τ)'s named parts (``div``, ``answer``, ``gate``, …).
        group_id: Index of the task's group within the rollout (G episodes share it).
        task_id: The task's id.
        source: The task's source (``gsm8k``, ``humaneval``, …).
        turns: Policy turns played.
        dsl: The final workflow as a one-line DSL.
        answer: The final workflow's answer (``None``: none).
        finished: Ended with an accepted ``finish``.
        truncated: Ended at ``max_turns`` or at the context limit without ``finish``.
        context_truncated: Ended because the next turn could not fit in the context.
        invalid_actions: Turns whose action the canvas rejected.
        backend_calls: Backend LLM calls spent executing the workflow (all executions).
        backend_tokens: Backend tokens spent (prompt + completion).
        policy_tokens: Tokens the policy sampled (mask-1 count).
        error: Why the episode stopped abnormally (engine failure), if it did.
        weights_version: The engine's weights version that sampled it.
        constraint_mass: Under constrained decoding, the mean over the policy's sampled
            tokens of the probability mass the raw policy put on the allowed tokens; NaN when
            unconstrained or not measured (vLLM engines).
    """

    token_ids: list[int]
    loss_mask: list[int]
    rollout_logprobs: list[float]
    reward: float
    reward_components: dict[str, float] = field(default_factory=dict)
    group_id: int = 0
    task_id: str = ""
    source: str = ""
    turns: int = 0
    dsl: str = ""
    answer: str | None = None
    finished: bool = False
    truncated: bool = False
    context_truncated: bool = False
    invalid_actions: int = 0
    backend_calls: int = 0
    backend_tokens: int = 0
    policy_tokens: int = 0
    error: str | None = None
    weights_version: int = 0
    constraint_mass: float = math.nan


__all__ = ["Trajectory"]
