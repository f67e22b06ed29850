"""Every runnable example in a docstring of the core runs and gives what it shows."""

from __future__ import annotations

import doctest
import importlib
import pkgutil

import pytest

import flowsteer


def _modules() -> list[str]:
    return sorted(
        info.name
        for info in pkgutil.walk_packages(flowsteer.__path__, prefix="flowsteer.")
        if not info.name.endswith("_runner")  # scripts run in a child process, not libraries
    )


@pytest.mark.parametrize("name", _modules())
def test_docstring_examples(name):
    module = importlib.import_module(name)
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    assert result.failed == 0, f"{result.failed} docstring example(s) failed in {name}"
