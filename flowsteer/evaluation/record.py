"""`EpisodeRecord`: one evaluated episode, the unit `episodes.jsonl` stores and the report counts.

Every system (the policy, the untrained policy, and the ``direct``/``cot``/``fixed`` baselines)
writes the same record, so one table compares them. Scores are computed once, when the episode
ends, for every metric `answer_metrics` lists; a task `score_answer` cannot score here
(`AnswerSkipped`) keeps its reason in ``skipped`` and no scores.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from typing import Any

SYSTEMS = ("policy", "untrained", "direct", "cot", "fixed", "workflow")
"""Every system name a record may carry, in report order (``workflow``: run-workflow)."""


@dataclass
class EpisodeRecord:
    """One episode of one system on one task.

    Attributes:
        system: Who answered: ``policy``, ``untrained``, ``direct``, ``cot``, ``fixed`` or
            ``workflow`` (a saved workflow run by ``flowsteer run-workflow``).
        index: The task's position in the evaluation set (resume and seeds key on it).
        task_id: The task's id.
        source: The task's dataset.
        kind: ``math``, ``qa`` or ``code``.
        actions: The policy's turns, as it wrote them (empty for baselines).
        observations: The canvas's answers: the first prompt, then one per turn that got one.
        dsl: The final workflow in one DSL line (``""``: none).
        workflow_json: The final workflow as `WorkflowGraph.to_json` (``""``: none).
        answer: The final answer text (``None``: none).
        scores: Every metric of `answer_metrics` for this task, headline first; empty when
            skipped.
        headline: The headline metric's name.
        skipped: Why `score_answer` could not score the task here (`AnswerSkipped`), else None.
        reward: R(τ) of a policy episode (``None`` for baselines or when it failed).
        reward_components: R(τ)'s named parts (policy episodes only).
        turns: Policy turns played (0 for baselines).
        policy_tokens: Tokens the policy sampled.
        backend_calls: Backend LLM calls spent (all executions of the episode).
        backend_tokens: Backend tokens spent (prompt + completion).
        finished: Ended with an accepted ``finish`` (``None`` for baselines: not applicable).
        error: Why the episode failed (engine abort, scoring failure), else None.
    """

    system: str
    index: int
    task_id: str
    source: str
    kind: str
    actions: list[str] = field(default_factory=list)
    observations: list[str] = field(default_factory=list)
    dsl: str = ""
    workflow_json: str = ""
    answer: str | None = None
    scores: dict[str, float] = field(default_factory=dict)
    headline: str = ""
    skipped: str | None = None
    reward: float | None = None
    reward_components: dict[str, float] = field(default_factory=dict)
    turns: int = 0
    policy_tokens: int = 0
    backend_calls: int = 0
    backend_tokens: int = 0
    finished: bool | None = None
    error: str | None = None

    @property
    def key(self) -> tuple[str, str, str]:
        """What makes an episode unique in one evaluation: (system, source, task id)."""
        return (self.system, self.source, self.task_id)

    @property
    def score(self) -> float | None:
        """The headline score, or None when the task was skipped."""
        return self.scores.get(self.headline) if self.skipped is None else None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Any) -> EpisodeRecord:
        """Inverse of `to_dict`; raises ValueError naming the missing or unknown field."""
        if not isinstance(data, dict):
            raise ValueError(f"an episode record is a JSON object, got {type(data).__name__}")
        names = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - names)
        if unknown:
            raise ValueError(f"episode record has unknown field(s) {unknown}")
        for required in ("system", "index", "task_id", "source", "kind"):
            if required not in data:
                raise ValueError(f"episode record lacks the field {required!r}")
        return cls(**data)


__all__ = ["SYSTEMS", "EpisodeRecord"]
