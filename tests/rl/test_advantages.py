"""Group-relative advantages: group statistics, the three std modes, zero-variance groups."""

from __future__ import annotations

import math

import pytest
import torch

from flowsteer.rl.advantages import compute_advantages

# Three groups, deliberately unsorted ids and uneven sizes:
#   group 7: [1, 0, 0, 1]   mean 0.5, population std 0.5
#   group 3: [2, 2]         zero variance
#   group 5: [0.5, 1.5, 1]  mean 1.0, population std √((0.25 + 0.25 + 0)/3) = √(1/6)
REWARDS = torch.tensor([1.0, 0.0, 2.0, 0.0, 0.5, 1.0, 2.0, 1.5, 1.0])
GROUPS = torch.tensor([7, 7, 3, 7, 5, 7, 3, 5, 5])
S6 = math.sqrt(1 / 6)


def test_group_scaling_uses_each_groups_mean_and_population_std():
    adv = compute_advantages(REWARDS, GROUPS, eps=0.0)
    # group 7: ±0.5 / 0.5 = ±1;  group 3: 0;  group 5: (−0.5, +0.5, 0) / √(1/6)
    expected = torch.tensor([1.0, -1.0, 0.0, -1.0, -0.5 / S6, 1.0, 0.0, 0.5 / S6, 0.0])
    torch.testing.assert_close(adv.values, expected)
    assert adv.num_groups == 3 and adv.zero_variance_groups == 1
    assert adv.keep.all()


def test_eps_is_added_to_the_std():
    adv = compute_advantages(REWARDS, GROUPS, eps=0.5)
    # group 7: 0.5 / (0.5 + 0.5) = 0.5
    assert adv.values[0].item() == pytest.approx(0.5)


def test_batch_scaling_uses_one_std_of_all_rewards():
    adv = compute_advantages(REWARDS, GROUPS, std_scale="batch", eps=0.0)
    # all 9 rewards: mean 9/9 = 1; squared deviations 0,1,1,1,.25,0,1,.25,0 → 4.5/9 = 0.5
    s = math.sqrt(0.5)
    expected = torch.tensor([0.5, -0.5, 0.0, -0.5, -0.5, 0.5, 0.0, 0.5, 0.0]) / s
    torch.testing.assert_close(adv.values, expected)


def test_batch_scaling_ignores_dropped_groups():
    adv = compute_advantages(REWARDS, GROUPS, std_scale="batch", eps=0.0, zero_variance="drop")
    # kept rewards 1,0,0,0.5,1,1.5,1: mean 5/7; deviations ×14: 4,−10,−10,−3,4,11,4 →
    # Σ squares 378/196, /7 = 27/98 → std √(27/98)
    s = math.sqrt(27 / 98)
    expected = torch.tensor([0.5, -0.5, 0.0, -0.5, -0.5, 0.5, 0.0, 0.5, 0.0]) / s
    torch.testing.assert_close(adv.values, expected)


def test_no_scaling_is_dr_grpo():
    adv = compute_advantages(REWARDS, GROUPS, std_scale="none")
    expected = torch.tensor([0.5, -0.5, 0.0, -0.5, -0.5, 0.5, 0.0, 0.5, 0.0])
    torch.testing.assert_close(adv.values, expected)


def test_group_advantages_are_centred_with_unit_rms():
    gen = torch.Generator().manual_seed(0)
    rewards = torch.rand(32, generator=gen)
    groups = torch.arange(32) // 8
    adv = compute_advantages(rewards, groups, eps=0.0)
    for g in range(4):
        values = adv.values[groups == g]
        assert values.mean().item() == pytest.approx(0.0, abs=1e-6)
        assert values.square().mean().sqrt().item() == pytest.approx(1.0, abs=1e-5)


@pytest.mark.parametrize("zero_variance", ["keep", "drop"])
def test_zero_variance_groups_are_zeroed_and_counted_either_way(zero_variance):
    adv = compute_advantages(REWARDS, GROUPS, zero_variance=zero_variance)
    in_flat_group = GROUPS == 3
    assert torch.all(adv.values[in_flat_group] == 0)
    assert adv.zero_variance_groups == 1
    if zero_variance == "drop":
        assert adv.keep.tolist() == (~in_flat_group).tolist()
    else:
        assert adv.keep.all()
    logged = adv.to_dict()
    assert logged["adv/zero_variance_groups"] == 1.0
    assert logged["adv/kept"] == (7.0 if zero_variance == "drop" else 9.0)


def test_zero_variance_tolerance_and_single_episode_groups():
    rewards = torch.tensor([1.0, 1.0 + 1e-7, 1.0, 1.001, 0.3])
    groups = torch.tensor([0, 0, 1, 1, 2])
    # group 0 spreads 1e-7 ≤ 1e-6: flat; group 1 spreads 1e-3: not; group 2 has one episode: flat
    adv = compute_advantages(rewards, groups, zero_variance="drop")
    assert adv.zero_variance_groups == 2 and adv.num_groups == 3
    assert adv.keep.tolist() == [False, False, True, True, False]
    assert adv.values[2].item() == pytest.approx(-1.0, abs=1e-2)
    assert adv.values[0].item() == 0.0 and adv.values[4].item() == 0.0
    loose = compute_advantages(rewards, groups, zero_variance_atol=1e-2)
    assert loose.zero_variance_groups == 3 and torch.all(loose.values == 0)


def test_all_groups_flat_gives_zeros_not_nan():
    adv = compute_advantages(torch.ones(6), torch.arange(6) // 3, std_scale="batch")
    assert torch.all(adv.values == 0) and adv.zero_variance_groups == 2
    dropped = compute_advantages(torch.ones(6), torch.arange(6) // 3, zero_variance="drop")
    assert not dropped.keep.any() and dropped.to_dict()["adv/abs_mean"] == 0.0


@pytest.mark.parametrize(
    ("rewards", "groups", "kwargs", "match"),
    [
        (torch.zeros(3), torch.zeros(2, dtype=torch.long), {}, "both be"),
        (torch.zeros(3), torch.zeros(3), {}, "integer"),
        (torch.tensor([0.0, float("nan")]), torch.zeros(2, dtype=torch.long), {}, "finite"),
        (torch.zeros(2), torch.zeros(2, dtype=torch.long), {"std_scale": "rank"}, "std_scale"),
        (torch.zeros(2), torch.zeros(2, dtype=torch.long), {"zero_variance": "x"}, "zero_var"),
    ],
)
def test_bad_inputs_are_refused(rewards, groups, kwargs, match):
    with pytest.raises(ValueError, match=match):
        compute_advantages(rewards, groups, **kwargs)
