"""Token-exact multi-turn rollouts: engines, episodes, trajectories and their collation."""

from flowsteer.rollout.engine import Engine, Generation, GenerationRequest, SamplingParams
from flowsteer.rollout.trajectory import Trajectory

__all__ = ["Engine", "Generation", "GenerationRequest", "SamplingParams", "Trajectory"]
