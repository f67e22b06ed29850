"""The dependency direction of docs/design.md §7, checked on the code as it is.

* Nothing under flowsteer/ imports Lightning or the adapter packages (not even lazily).
* The text side of the core (everything but the torch-side packages) imports without torch.
* vLLM is imported in at most one module, and never at module level.
"""

from __future__ import annotations

import ast
import json
import pkgutil
import subprocess
import sys
from pathlib import Path

import pytest

import flowsteer

CORE = Path(flowsteer.__file__).parent
ADAPTERS = ("lightning", "pytorch_lightning", "lightning_modules", "datamodules", "callbacks")
# Packages of the core that are allowed to import torch at import time.
TORCH_SIDE = (
    "flowsteer.models",
    "flowsteer.losses",
    "flowsteer.advantages",
    "flowsteer.policy",
    "flowsteer.token_logprobs",
    "flowsteer.rollout",
)


def _imports(path: Path) -> list[tuple[str, bool]]:
    """(imported module, at module level?) for every import statement in a file."""
    tree = ast.parse(path.read_text(), filename=str(path))
    top_level = {id(node) for node in tree.body}
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(alias.name, id(node) in top_level) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.append((node.module, id(node) in top_level))
    return found


def _core_files() -> list[Path]:
    return sorted(CORE.rglob("*.py"))


def test_core_never_imports_lightning_or_adapters():
    offenders = [
        f"{path.relative_to(CORE.parent)} imports {module}"
        for path in _core_files()
        for module, _ in _imports(path)
        if module.split(".")[0] in ADAPTERS
    ]
    assert offenders == []


def test_vllm_lives_in_one_module_imported_lazily():
    users = {
        path.relative_to(CORE.parent): top
        for path in _core_files()
        for module, top in _imports(path)
        if module.split(".")[0] == "vllm"
    }
    assert len(users) <= 1, f"vllm imported in several modules: {sorted(map(str, users))}"
    assert not any(users.values()), f"vllm imported at module level in {list(users)}"


def _text_side_modules() -> list[str]:
    names = []
    for info in pkgutil.walk_packages([str(CORE)], prefix="flowsteer."):
        if not info.name.startswith(TORCH_SIDE):
            names.append(info.name)
    return sorted(names)


def test_text_side_imports_without_torch():
    modules = _text_side_modules()
    assert "flowsteer.tasks" in modules
    code = (
        "import importlib, json, sys\n"
        f"for name in {modules!r}:\n"
        "    importlib.import_module(name)\n"
        "heavy = sorted(m for m in ('torch', 'transformers', 'lightning', 'vllm') if m in sys.modules)\n"
        "print(json.dumps(heavy))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout.strip().splitlines()[-1]) == []


def test_torch_side_does_import_torch():
    """Guards the check above: the same probe does see torch when a torch-side module loads."""
    code = "import sys, flowsteer.models.tiny as t; t.build_tokenizer; import torch; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.stdout.strip() == "True", out.stderr


def test_local_model_backend_imports_torch_only_when_constructed(tmp_path):
    try:
        import flowsteer.llm.transformers_backend  # noqa: F401
    except ImportError:
        pytest.skip("flowsteer.llm.transformers_backend does not exist yet")
    from flowsteer.models.tiny import build_tiny_model

    model_dir = build_tiny_model(tmp_path / "tiny")
    code = (
        "import sys\n"
        "from flowsteer.llm.transformers_backend import TransformersBackend\n"
        "before = 'torch' in sys.modules\n"
        f"TransformersBackend({str(model_dir)!r})\n"
        "print(before, 'torch' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["False", "True"]
