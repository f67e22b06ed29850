"""The update-phase core: minibatch plans, micro-batches, scoring the old policy."""

from __future__ import annotations

import pytest
import torch

from flowsteer.rl.schedules import WarmupCosine
from flowsteer.rl.update import micro_batches, plan_minibatches, score_buffer
from flowsteer.rollout.batch import collate
from flowsteer.rollout.episode_stats import EpisodeStats, operator_count
from flowsteer.rollout.trajectory import Trajectory


def _batch(rows: int = 5):
    trajectories = [
        Trajectory(
            list(range(3, 9 + i)),
            [0, 0, 0] + [1] * (6 + i - 3),
            [0.0] * (6 + i),
            float(i),
            group_id=i // 2,
        )
        for i in range(rows)
    ]
    return collate(trajectories, torch.arange(rows, dtype=torch.float32), 0)


def test_plan_covers_every_row_once_per_pass_with_a_fixed_step_count() -> None:
    plan = plan_minibatches(list(range(10)), 10, 4, ppo_epochs=2, seed=1)
    assert plan.minibatches_per_epoch == 3 and len(plan.steps) == 6
    for p in range(2):
        rows = [r for step in plan.steps[3 * p : 3 * p + 3] for r in step]
        assert sorted(rows) == list(range(10))
    assert plan.steps[:3] != plan.steps[3:]  # a fresh permutation per pass
    assert plan == plan_minibatches(list(range(10)), 10, 4, ppo_epochs=2, seed=1)


def test_dropped_rows_keep_the_step_count() -> None:
    plan = plan_minibatches([0, 5], 10, 4, ppo_epochs=1, seed=0)
    assert len(plan.steps) == 3 and sorted(r for s in plan.steps for r in s) == [0, 5]


def test_micro_batches_trim_padding_and_keep_tokens() -> None:
    batch = _batch()
    parts = list(micro_batches(batch, 2))
    assert [len(p) for p in parts] == [2, 2, 1]
    assert parts[0].input_ids.shape[1] == 7  # the longest of rows 0-1, not of the batch (10)
    assert sum(p.num_loss_tokens for p in parts) == batch.num_loss_tokens


def test_score_buffer_matches_the_policy_row_by_row(tiny_policy) -> None:
    from flowsteer.rl.policy import Policy

    policy = Policy(str(tiny_policy)).eval()
    batch = _batch(3)
    scored = score_buffer(policy, batch, micro_batch_size=2, reference=False)
    for i in range(3):
        n = int(batch.attention_mask[i].sum())
        alone = policy.token_logprobs(
            batch.input_ids[i : i + 1, :n], batch.attention_mask[i : i + 1, :n]
        ).logprobs
        wanted = batch.loss_mask[i, :n].bool()
        assert wanted.any() and not wanted.all()
        torch.testing.assert_close(
            scored.old_logprobs[i, :n][wanted], alone[0, wanted].detach(), rtol=1e-5, atol=1e-5
        )
        # Only loss-mask positions are scored: the head never ran anywhere else.
        assert torch.all(scored.old_logprobs[i, :n][~wanted] == 0)
        assert torch.all(scored.old_logprobs[i, n:] == 0)
    assert scored.ref_logprobs is None


def test_score_buffer_can_skip_the_old_policy(tiny_policy) -> None:
    from flowsteer.rl.policy import LoraSettings, Policy

    policy = Policy(str(tiny_policy)).eval()
    batch = _batch(3)
    scored = score_buffer(policy, batch, micro_batch_size=2, reference=False, old=False)
    assert scored.old_logprobs is None and scored.ref_logprobs is None
    lora = Policy(str(tiny_policy), lora=LoraSettings(r=4, alpha=4), with_reference=True).eval()
    scored = score_buffer(lora, batch, micro_batch_size=2, reference=True, old=False)
    wanted = batch.loss_mask.bool()
    reference = lora.reference_logprobs(batch.input_ids, batch.attention_mask)
    assert scored.old_logprobs is None
    torch.testing.assert_close(scored.ref_logprobs[wanted], reference[wanted], rtol=0, atol=1e-5)


@pytest.mark.parametrize("with_entropy", [False, True])
def test_score_mask_gives_the_full_values_where_it_is_set(tiny_policy, with_entropy) -> None:
    from flowsteer.rl.policy import Policy

    policy = Policy(str(tiny_policy)).eval()
    batch = _batch(3)
    full = policy.token_logprobs(batch.input_ids, batch.attention_mask, with_entropy=with_entropy)
    masked = policy.token_logprobs(
        batch.input_ids,
        batch.attention_mask,
        with_entropy=with_entropy,
        score_mask=batch.loss_mask,
    )
    wanted = batch.loss_mask.bool()
    torch.testing.assert_close(masked.logprobs[wanted], full.logprobs[wanted], rtol=0, atol=1e-6)
    assert torch.all(masked.logprobs[~wanted] == 0)
    if with_entropy:
        torch.testing.assert_close(masked.entropy[wanted], full.entropy[wanted], rtol=0, atol=1e-6)
    with pytest.raises(ValueError, match="score_mask must be"):
        policy.token_logprobs(
            batch.input_ids, batch.attention_mask, score_mask=batch.loss_mask[:, 1:]
        )


def test_old_is_current_only_for_one_step_without_dropout() -> None:
    from flowsteer.rl.update import old_is_current

    assert old_is_current(ppo_epochs=1, minibatches=1, dropout_free=True)
    assert not old_is_current(ppo_epochs=2, minibatches=1, dropout_free=True)
    assert not old_is_current(ppo_epochs=1, minibatches=2, dropout_free=True)
    assert not old_is_current(ppo_epochs=1, minibatches=1, dropout_free=False)


def test_episode_stats_excludes_failures_and_flags_shortcuts() -> None:
    good = Trajectory(
        [1],
        [1],
        [0.0],
        0.5,
        {"div": 1.0, "answer": 1.0, "div/checker": 0.2},
        source="gsm8k",
        dsl="Plan -> Programmer -> Verify ? Revise : done -> Format",
        finished=True,
        turns=4,
    )
    short = Trajectory(
        [1],
        [1],
        [0.0],
        -1.0,
        {"div": 0.2, "answer": float("nan"), "div/checker": 0.0},
        source="gsm8k",
        dsl="Custom",
        turns=2,
        invalid_actions=1,
    )
    failed = Trajectory([1], [1], [0.0], float("nan"), source="gsm8k", error="engine abort")
    stats = EpisodeStats.of([good, short, failed])
    assert (stats.episodes, stats.failed) == (3, 1)
    assert stats.reward == -0.25 and stats.accuracy == {"gsm8k": 0.5}
    assert stats.shortcut_rate == 0.5 and stats.div_pass_rate == 0.5 and stats.finish_rate == 0.5
    assert stats.invalid_action_rate == 1 / 6
    assert stats.operators == 3.0 and stats.to_dict()["rollout/operators"] == 3.0  # (5 + 1) / 2
    assert stats.to_dict()["rollout/reward/answer"] == 1.0  # the unscored answer is left out
    assert operator_count("Plan -> [Programmer, Custom] -> ScEnsemble") == 4


def test_warmup_cosine() -> None:
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    sched = WarmupCosine(opt, warmup_steps=2, total_steps=6)
    lrs = []
    for _ in range(7):
        lrs.append(round(opt.param_groups[0]["lr"], 4))
        opt.step()
        sched.step()
    assert lrs == [0.3333, 0.6667, 1.0, 0.8536, 0.5, 0.1464, 0.0]


def test_warmup_cosine_resumes_its_position_but_takes_a_new_length() -> None:
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    sched = WarmupCosine(opt, warmup_steps=0, total_steps=4)
    for _ in range(4):
        sched.step()
    longer = WarmupCosine(opt, warmup_steps=0, total_steps=8)
    longer.load_state_dict(sched.state_dict())
    assert longer.last_epoch == 4 and longer.total_steps == 8
    assert longer.factor(longer.last_epoch) == 0.5  # halfway through the longer cosine


def test_warmup_cosine_loaded_into_a_longer_schedule_sets_the_optimizers_lr() -> None:
    # A run that finished a 4-step cosine (lr 0) resumes with total_steps = 8: the optimizer's
    # restored lr is the old schedule's; loading the scheduler after it must replace it.
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    sched = WarmupCosine(opt, warmup_steps=0, total_steps=4)
    for _ in range(4):
        opt.step()
        sched.step()
    assert opt.param_groups[0]["lr"] == 0.0
    resumed = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    longer = WarmupCosine(resumed, warmup_steps=0, total_steps=8)
    resumed.load_state_dict(opt.state_dict())  # Lightning restores optimizers first
    longer.load_state_dict(sched.state_dict())
    assert resumed.param_groups[0]["lr"] == pytest.approx(0.5)
    assert longer.get_last_lr() == pytest.approx([0.5])


def test_warmup_cosine_docstring_states_the_warmup_the_code_gives() -> None:
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    for warmup in (1, 3, 10):
        sched = WarmupCosine(opt, warmup_steps=warmup, total_steps=300)
        below_peak = [sched.factor(s) for s in range(warmup)]
        assert below_peak == [(s + 1) / (warmup + 1) for s in range(warmup)]
        assert below_peak[0] > 0.0 and sched.factor(warmup) == 1.0  # the peak at step `warmup`
    # The docstring gives the same rule (it once promised 1 / warmup_steps at step 0).
    assert "(s + 1) / (warmup_steps + 1)" in " ".join((WarmupCosine.__doc__ or "").split())


def test_warmup_cosine_refuses_a_min_ratio_outside_0_1() -> None:
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    with pytest.raises(ValueError, match="min_ratio must be in"):
        WarmupCosine(opt, min_ratio=1.5)


def test_episode_stats_constraint_mass_is_the_mean_of_measured_episodes() -> None:
    def episode(mass: float) -> Trajectory:
        return Trajectory([1], [1], [0.0], -1.0, constraint_mass=mass)

    stats = EpisodeStats.of([episode(0.2), episode(0.4), episode(float("nan"))])
    assert abs(stats.to_dict()["rollout/constraint_mass"] - 0.3) < 1e-9
    unmeasured = EpisodeStats.of([episode(float("nan"))]).to_dict()["rollout/constraint_mass"]
    assert unmeasured != unmeasured  # NaN: the callback's reduction leaves it out
