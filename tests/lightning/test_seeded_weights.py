"""The test-only weight changers that make the multi-rank sync tests able to fail: what they set
moves the policy's log-probs far beyond the probe tolerance the topology and fleet tests use, so
an engine that kept its old weights (or a server that ignored the adapter) would fail the probe."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from flowsteer.rl.policy import LoraSettings, Policy
from tests.lightning.lora_setter import SeededWeights
from tests.lightning.test_topology import PROBE_TOLERANCE


def _mean_logprob_change(policy: Policy, step: int) -> float:
    ids = torch.arange(8, 72).reshape(2, 32)
    before = policy.token_logprobs(ids, torch.ones_like(ids)).logprobs
    module = SimpleNamespace(policy=policy)
    SeededWeights().on_train_epoch_end(SimpleNamespace(global_step=step), module)
    after = policy.token_logprobs(ids, torch.ones_like(ids)).logprobs
    return (after - before).abs().mean().item()


@pytest.mark.parametrize("lora", [False, True], ids=["full", "lora"])
def test_each_sync_moves_the_logprobs_far_beyond_the_probe_tolerance(
    tiny_policy: Path, lora: bool
) -> None:
    settings = LoraSettings(r=4, alpha=8, dropout=0.0) if lora else None
    policy = Policy(str(tiny_policy), lora=settings)
    for step in (1, 2):  # every version differs from the one before
        assert _mean_logprob_change(policy, step) > 10 * PROBE_TOLERANCE


def test_the_changes_are_a_function_of_the_step(tiny_policy: Path) -> None:
    policies = [Policy(str(tiny_policy)) for _ in range(2)]
    for policy in policies:
        SeededWeights().on_train_epoch_end(
            SimpleNamespace(global_step=3), SimpleNamespace(policy=policy)
        )
    for a, b in zip(policies[0].parameters(), policies[1].parameters(), strict=True):
        assert torch.equal(a, b)
