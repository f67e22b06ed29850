"""Token-exact multi-turn rollouts: engines, episodes, trajectories and their collation."""

from flowsteer.rollout.action_grammar import ActionConstraint, ActionGrammar
from flowsteer.rollout.batch import RolloutBatch, collate
from flowsteer.rollout.chat import ChatFormat
from flowsteer.rollout.engine import Engine, Generation, GenerationRequest, SamplingParams
from flowsteer.rollout.episode import RolloutEpisode
from flowsteer.rollout.hf_engine import HFEngine
from flowsteer.rollout.runner import RolloutRunner, request_seed
from flowsteer.rollout.trajectory import Trajectory
from flowsteer.rollout.vllm_engine import VLLMEngine  # imports vllm only when constructed
from flowsteer.rollout.vllm_server_engine import VLLMServerEngine

__all__ = [
    "ActionConstraint",
    "ActionGrammar",
    "ChatFormat",
    "Engine",
    "Generation",
    "GenerationRequest",
    "HFEngine",
    "RolloutBatch",
    "RolloutEpisode",
    "RolloutRunner",
    "SamplingParams",
    "Trajectory",
    "VLLMEngine",
    "VLLMServerEngine",
    "collate",
    "request_seed",
]
