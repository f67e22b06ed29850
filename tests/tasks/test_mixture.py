"""TaskMixture: per-source counts, weights, reproducibility and exact resume."""

from __future__ import annotations

import collections
import copy

import pytest

from flowsteer.tasks import Task, TaskMixture


def _pool(name: str, n: int) -> list[Task]:
    return [Task(f"{name}{i}", name, "math", f"q{i}", str(i)) for i in range(n)]


POOLS = {"gsm8k": _pool("g", 7), "math": _pool("m", 3), "hotpotqa": _pool("h", 5)}


def _ids(batches):
    return [[t.id for t in b] for b in batches]


def test_counts_draw_a_fixed_number_per_source_per_step():
    mix = TaskMixture(POOLS, counts={"gsm8k": 2, "math": 1, "hotpotqa": 3}, seed=1)
    for _ in range(10):
        batch = mix.next_batch()
        assert collections.Counter(t.source for t in batch) == {"g": 2, "m": 1, "h": 3}


def test_each_pass_over_a_pool_visits_every_task_once():
    mix = TaskMixture(POOLS, counts={"gsm8k": 7}, seed=3)
    first, second = mix.next_batch(), mix.next_batch()
    assert sorted(t.id for t in first) == sorted(t.id for t in POOLS["gsm8k"])
    assert sorted(t.id for t in second) == sorted(t.id for t in POOLS["gsm8k"])
    assert [t.id for t in first] != [t.id for t in second]  # reshuffled per pass


def test_same_seed_same_stream_other_seed_other_stream():
    def run(seed):
        mix = TaskMixture(POOLS, counts={"gsm8k": 2, "math": 1}, seed=seed)
        return _ids(mix.next_batch() for _ in range(6))

    assert run(7) == run(7)
    assert run(7) != run(8)


def test_resume_from_state_dict_continues_exactly():
    mix = TaskMixture(POOLS, weights={"gsm8k": 2.0, "math": 1.0, "hotpotqa": 1.0}, batch_size=4)
    for _ in range(3):
        mix.next_batch()
    state = copy.deepcopy(mix.state_dict())
    expected = _ids(mix.next_batch() for _ in range(5))

    fresh = TaskMixture(POOLS, weights={"gsm8k": 2.0, "math": 1.0, "hotpotqa": 1.0}, batch_size=4)
    fresh.load_state_dict(state)
    assert _ids(fresh.next_batch() for _ in range(5)) == expected


def test_weights_follow_proportions():
    mix = TaskMixture(POOLS, weights={"gsm8k": 3.0, "math": 1.0}, batch_size=8, seed=0)
    counts = collections.Counter(t.source for _ in range(200) for t in mix.next_batch())
    assert "h" not in counts
    assert 2.5 < counts["g"] / counts["m"] < 3.5


def test_resume_into_a_different_mixture_is_refused():
    state = TaskMixture(POOLS, counts={"gsm8k": 1}, seed=0).state_dict()
    other = TaskMixture(POOLS, counts={"gsm8k": 1}, seed=1)
    with pytest.raises(ValueError, match="different mixture"):
        other.load_state_dict(state)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"counts": {"nope": 1}}, "unknown source"),
        ({"counts": {"gsm8k": 0}}, "at least one task"),
        ({"weights": {"gsm8k": 1.0}}, "batch_size"),
        ({"weights": {"gsm8k": -1.0}, "batch_size": 2}, "weights must be >= 0"),
        ({"counts": {"gsm8k": 1}, "weights": {"gsm8k": 1.0}}, "not both"),
    ],
)
def test_bad_configuration_is_rejected_with_a_reason(kwargs, message):
    with pytest.raises(ValueError, match=message):
        TaskMixture(POOLS, **kwargs)


def test_empty_pool_is_rejected():
    with pytest.raises(ValueError, match="have no tasks"):
        TaskMixture({"gsm8k": []})


def test_weighted_batches_draw_a_fresh_source_plan_every_step():
    mix = TaskMixture(POOLS, weights={"gsm8k": 1.0, "math": 1.0, "hotpotqa": 1.0}, batch_size=4)
    plans = {tuple(t.source for t in mix.next_batch()) for _ in range(10)}
    assert len(plans) > 1
