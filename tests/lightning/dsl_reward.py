"""`DslReward`: a test reward that varies with the workflow the policy wrote, so an untrained
tiny policy's groups have non-zero advantages (real losses) without a backend LLM."""

from __future__ import annotations

import zlib

from flowsteer.rewards.workflow_reward import RewardOutput, WorkflowReward


class DslReward(WorkflowReward):
    """R(τ) in [0, 1): a fixed hash of the final workflow's DSL (the same episode, the same
    reward), 0 for an empty workflow."""

    def __call__(self, task, graph, prediction, *, truncated=False, library=None) -> RewardOutput:
        dsl = graph.to_dsl()
        total = (zlib.crc32(dsl.encode()) % 1000) / 1000 if dsl else 0.0
        return RewardOutput(total=total, components={"div": total}, truncated=truncated)
