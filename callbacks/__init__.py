"""Lightning callbacks: rollouts at the start of every RL iteration, weight sync at its end."""

from callbacks.rollout import RolloutCallback
from callbacks.weight_sync import WeightSyncCallback

__all__ = ["RolloutCallback", "WeightSyncCallback"]
