"""Old import paths of modules that moved in 0.2 keep working for one release.

``import flowsteer.policy`` (and ``from flowsteer.losses import cwrpo_loss``, a ``class_path:
flowsteer.policy.Policy`` in an old config, a checkpoint's saved config) resolves to the module's
new home and warns once with a `DeprecationWarning` naming it. The alias is the same module
object, so classes and functions are identical under both names. Nothing is imported until an
old name is used, so the text side of the core still imports without torch.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.util
import sys
import warnings
from types import ModuleType

# Old module name -> new module name. Remove in 0.3.
MOVED: dict[str, str] = {
    "flowsteer.policy": "flowsteer.rl.policy",
    "flowsteer.token_logprobs": "flowsteer.rl.token_logprobs",
    "flowsteer.advantages": "flowsteer.rl.advantages",
    "flowsteer.losses": "flowsteer.rl.losses",
    "flowsteer.update": "flowsteer.rl.update",
    "flowsteer.schedules": "flowsteer.rl.schedules",
    "flowsteer.sandbox": "flowsteer.isolation.sandbox",
    "flowsteer.sandbox_capabilities": "flowsteer.isolation.capabilities",
    "flowsteer.sandbox_cgroup": "flowsteer.isolation.cgroup",
    "flowsteer.hidden_tests": "flowsteer.isolation.hidden_tests",
}


class MovedModuleFinder(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Finds an old module name and loads it as the new module (the same object)."""

    def find_spec(self, fullname, path=None, target=None):
        if fullname in MOVED:
            return importlib.util.spec_from_loader(fullname, self)
        return None

    def create_module(self, spec) -> ModuleType:
        new = MOVED[spec.name]
        warnings.warn(
            f"{spec.name} moved to {new}; the old name stops working in flowsteer 0.3",
            DeprecationWarning,
            stacklevel=2,
        )
        return importlib.import_module(new)

    def exec_module(self, module: ModuleType) -> None:
        """Nothing to run: the module was executed under its new name."""


def install() -> None:
    """Put the finder on `sys.meta_path` once (idempotent)."""
    if not any(isinstance(f, MovedModuleFinder) for f in sys.meta_path):
        sys.meta_path.append(MovedModuleFinder())
