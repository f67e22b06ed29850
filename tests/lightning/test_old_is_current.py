"""The scoring pass is skipped when the update is exactly on-policy (one pass, one minibatch,
no dropout, engine weights current), and the run is the same as with the pass, to float tolerance."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

import lightning_modules.cwrpo_module as cwrpo_module
from tests.lightning.test_update_step import ROWS, _fit


def _runs(tiny_policy: Path, monkeypatch, **args):
    calls: list[bool] = []
    real = cwrpo_module.score_buffer

    def spy(*a, **k):
        calls.append(k["old"])
        return real(*a, **k)

    monkeypatch.setattr(cwrpo_module, "score_buffer", spy)
    skipped = _fit(tiny_policy, epochs=2, **args)
    skip_calls = list(calls)
    calls.clear()
    monkeypatch.setattr(cwrpo_module, "old_is_current", lambda **_: False)
    scored = _fit(tiny_policy, epochs=2, **args)
    return skipped, skip_calls, scored, list(calls)


def test_one_minibatch_one_pass_skips_scoring_and_trains_the_same(
    tiny_policy: Path, monkeypatch
) -> None:
    args = dict(
        optimizer=lambda params: torch.optim.AdamW(params, lr=1e-2),
        minibatch_size=len(ROWS),
        ppo_epochs=1,
        micro_batch_size=2,
    )
    (module_a, _, rows_a), skip_calls, (module_b, _, rows_b), score_calls = _runs(
        tiny_policy, monkeypatch, **args
    )
    assert skip_calls == [False, False]  # the old policy is never scored
    assert score_calls == [True, True]
    assert len(rows_a) == len(rows_b) == 2
    for a, b in zip(rows_a, rows_b, strict=True):
        for name in ("train/loss", "train/pg_loss", "train/ratio_mean", "train/approx_kl_old"):
            assert a[name] == pytest.approx(b[name], rel=1e-5, abs=1e-6), name
        assert a["train/ratio_mean"] == pytest.approx(1.0, abs=1e-6)
    params_b = dict(module_b.policy.named_parameters())
    for name, value in module_a.policy.named_parameters():
        torch.testing.assert_close(value, params_b[name], rtol=1e-5, atol=1e-6, msg=name)


def test_two_minibatches_still_score(tiny_policy: Path, monkeypatch) -> None:
    args = dict(
        optimizer=lambda params: torch.optim.SGD(params, lr=1.0),
        minibatch_size=2,
        ppo_epochs=1,
    )
    _, skip_calls, _, _ = _runs(tiny_policy, monkeypatch, **args)
    assert skip_calls == [True, True]
