"""Lightning callbacks: rollouts at the start of every RL iteration, weight sync at its end, and
checkpoints after optimizer steps."""

from callbacks.checkpoint import StepCheckpointCallback
from callbacks.rollout import RolloutCallback
from callbacks.rollout_source import RolloutSource
from callbacks.weight_sync import WeightSyncCallback

__all__ = [
    "RolloutCallback",
    "RolloutSource",
    "StepCheckpointCallback",
    "WeightSyncCallback",
]
