"""`CWRPOModule(retain_host_memory)`: the allocator setting is applied on CPU, and only when asked."""

from __future__ import annotations


def test_cwrpo_module_applies_it_on_cpu_unless_switched_off(tiny_policy, monkeypatch):
    import lightning as L

    import lightning_modules.cwrpo_module as cwrpo
    from flowsteer.rl.policy import Policy

    calls = []
    monkeypatch.setattr(cwrpo, "retain_freed_host_memory", lambda: calls.append(1) or True)
    policy = Policy(str(tiny_policy))
    for retain, expected in ((True, [1]), (False, [])):
        calls.clear()
        module = cwrpo.CWRPOModule(policy, retain_host_memory=retain)
        module.trainer = L.Trainer(accelerator="cpu", logger=False, enable_progress_bar=False)
        module.setup("fit")
        assert calls == expected
