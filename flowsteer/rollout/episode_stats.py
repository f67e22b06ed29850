"""`EpisodeStats`: what one batch of finished episodes says about the policy, for logging.

Pure Python over `Trajectory` fields (no torch), so the trainer, a benchmark or a notebook read
the same numbers. Episodes that failed (engine abort: ``error`` set, reward NaN) are counted as
failures and excluded from every reward and accuracy mean, never scored as if they had succeeded.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass, field

from flowsteer.rollout.trajectory import Trajectory

# Operator names in a workflow DSL are capitalised words (`Plan -> [Programmer, Custom] -> …`);
# `done` (the pass branch of a conditional) is lower case and not an operator.
_OPERATOR = re.compile(r"\b[A-Z][A-Za-z]*\b")

SHORTCUT_MIN_OPERATORS = 3


def operator_count(dsl: str) -> int:
    """Operators in a one-line workflow DSL, repeats included.

    Example:
        >>> operator_count("Plan -> [Programmer, Custom] -> Verify ? Revise : done -> Format")
        6
    """
    return len(_OPERATOR.findall(dsl))


def _mean(values: Sequence[float]) -> float:
    finite = [v for v in values if not math.isnan(v)]
    return sum(finite) / len(finite) if finite else 0.0


@dataclass(frozen=True)
class EpisodeStats:
    """Means over one batch of episodes (failed episodes excluded except where counted).

    Attributes:
        episodes: Episodes in the batch, failed ones included.
        failed: Episodes the engine aborted (reward NaN); they never train.
        reward: Mean R(τ).
        components: Mean of each reward component (``div``, ``answer``, ``gate``, ``div/…``);
            an ``answer`` that was not computed (gate closed) is left out of its mean.
        accuracy: Per source, mean R_ans (math/code: pass rate; QA: F1), an answer that was
            not scored counting as 0.
        div_pass_rate: Share of episodes whose R_div reached its maximum (the gate opened).
        shortcut_rate: Share of episodes whose final workflow has fewer than three operators
            or no checker.
        finish_rate: Share that ended with an accepted ``finish``.
        truncation_rate: Share cut at ``max_turns`` or the context limit.
        invalid_action_rate: Rejected actions per policy turn.
        turns: Policy turns per episode.
        operators: Operators in the final workflow per episode (repeats and structures'
            children included; `operator_count`).
        policy_tokens: Tokens the policy sampled per episode.
        backend_calls: Backend LLM calls per episode.
        backend_tokens: Backend tokens per episode.
        constraint_mass: Under constrained decoding, the mean probability mass the raw policy
            put on the allowed tokens (per episode, then averaged); NaN when no episode
            measured it (unconstrained, or a vLLM engine).
    """

    episodes: int
    failed: int
    reward: float
    components: dict[str, float] = field(default_factory=dict)
    accuracy: dict[str, float] = field(default_factory=dict)
    div_pass_rate: float = 0.0
    shortcut_rate: float = 0.0
    finish_rate: float = 0.0
    truncation_rate: float = 0.0
    invalid_action_rate: float = 0.0
    turns: float = 0.0
    operators: float = 0.0
    policy_tokens: float = 0.0
    backend_calls: float = 0.0
    backend_tokens: float = 0.0
    constraint_mass: float = math.nan

    @classmethod
    def of(cls, trajectories: Sequence[Trajectory], div_max: float = 1.0) -> EpisodeStats:
        """Aggregate ``trajectories``; ``div_max`` is R_div's maximum (the gate's threshold)."""
        ok = [t for t in trajectories if t.error is None and not math.isnan(t.reward)]
        n = max(len(ok), 1)
        names = dict.fromkeys(name for t in ok for name in t.reward_components)
        components = {
            name: _mean([t.reward_components.get(name, math.nan) for t in ok]) for name in names
        }
        accuracy: dict[str, float] = {}
        for source in dict.fromkeys(t.source for t in ok):
            answers = [
                t.reward_components.get("answer", math.nan) for t in ok if t.source == source
            ]
            accuracy[source] = sum(0.0 if math.isnan(a) else a for a in answers) / len(answers)
        turns = sum(t.turns for t in ok)
        return cls(
            episodes=len(trajectories),
            failed=len(trajectories) - len(ok),
            reward=_mean([t.reward for t in ok]),
            components=components,
            accuracy=accuracy,
            div_pass_rate=sum(t.reward_components.get("div", 0.0) >= div_max - 1e-6 for t in ok)
            / n,
            shortcut_rate=sum(_is_shortcut(t) for t in ok) / n,
            finish_rate=sum(t.finished for t in ok) / n,
            truncation_rate=sum(t.truncated or t.context_truncated for t in ok) / n,
            invalid_action_rate=sum(t.invalid_actions for t in ok) / max(turns, 1),
            turns=turns / n,
            operators=sum(operator_count(t.dsl) for t in ok) / n,
            policy_tokens=sum(t.policy_tokens for t in ok) / n,
            backend_calls=sum(t.backend_calls for t in ok) / n,
            backend_tokens=sum(t.backend_tokens for t in ok) / n,
            constraint_mass=_mean_or_nan([t.constraint_mass for t in ok]),
        )

    def to_dict(self, prefix: str = "rollout") -> dict[str, float]:
        """Every statistic as a float named ``"{prefix}/…"`` (accuracy per source included)."""
        out = {
            f"{prefix}/episodes": float(self.episodes),
            f"{prefix}/failed_episodes": float(self.failed),
            f"{prefix}/reward/total": self.reward,
            **{f"{prefix}/reward/{k}": v for k, v in self.components.items()},
            **{f"{prefix}/accuracy/{k}": v for k, v in self.accuracy.items()},
        }
        for name in (
            "div_pass_rate",
            "shortcut_rate",
            "finish_rate",
            "truncation_rate",
            "invalid_action_rate",
            "turns",
            "operators",
            "policy_tokens",
            "backend_calls",
            "backend_tokens",
            "constraint_mass",  # NaN when unmeasured: the callback's reduction skips NaN
        ):
            out[f"{prefix}/{name}"] = float(getattr(self, name))
        return out


def _mean_or_nan(values: Sequence[float]) -> float:
    finite = [v for v in values if not math.isnan(v)]
    return sum(finite) / len(finite) if finite else math.nan


def _is_shortcut(trajectory: Trajectory) -> bool:
    few = operator_count(trajectory.dsl) < SHORTCUT_MIN_OPERATORS
    return few or trajectory.reward_components.get("div/checker", 0.0) <= 0.0


__all__ = ["SHORTCUT_MIN_OPERATORS", "EpisodeStats", "operator_count"]
