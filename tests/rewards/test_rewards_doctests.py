"""The runnable examples in the rewards' docstrings are tests too."""

from __future__ import annotations

import doctest
import importlib

import pytest

MODULES = [
    "flowsteer.rewards.answer",
    "flowsteer.rewards.code_answer",
    "flowsteer.rewards.math_answer",
    "flowsteer.rewards.qa_answer",
    "flowsteer.rewards.structure",
    "flowsteer.rewards.workflow_reward",
]


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples_run(name: str) -> None:
    module = importlib.import_module(name)
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0, f"{name} has no runnable example"
    assert result.failed == 0
