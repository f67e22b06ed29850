"""The dependency direction of docs/design.md §7, checked on the code as it is.

* Nothing under flowsteer/ imports Lightning or the adapter packages (not even lazily).
* The text side of the core (everything but the torch-side packages) imports without torch.
* vLLM is imported in at most one module, and never at module level.
* No import circles among the project's modules (type-only and function-level imports count:
  a circle hidden behind ``TYPE_CHECKING`` is still two modules that cannot be read apart).
* The root of the core holds only the few modules §7 names; the RL core and the isolation
  layer are packages, and their old import paths still resolve (to the same objects).
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
TORCH_SIDE = ("flowsteer.models", "flowsteer.rl", "flowsteer.rollout")
REPO = CORE.parent
PACKAGES = ("flowsteer", "lightning_modules", "datamodules", "callbacks")


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


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(REPO).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _import_graph() -> dict[str, set[str]]:
    """Module -> the project modules it imports, anywhere in the file (submodule-precise)."""
    files = {_module_name(p): p for pkg in PACKAGES for p in sorted((REPO / pkg).rglob("*.py"))}
    graph: dict[str, set[str]] = {}
    for name, path in files.items():
        tree = ast.parse(path.read_text(), filename=str(path))
        targets: set[str] = set()
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                targets |= {a.name for a in node.names}
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                for alias in node.names:  # `from pkg import submodule` points at the submodule
                    sub = f"{node.module}.{alias.name}"
                    targets.add(sub if sub in files else node.module)
        graph[name] = {t for t in targets if t in files and t != name}
    return graph


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """One representative circle per strongly connected component (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def test_no_import_circles():
    graph = _import_graph()
    assert "flowsteer.canvas.canvas" in graph and "lightning_modules.buffer" in graph
    assert _cycles(graph) == []


def test_cycle_check_sees_a_circle():
    """Guards the check above: a two-module circle is found."""
    assert _cycles({"a": {"b"}, "b": {"a"}, "c": {"a"}}) == [["a", "b"]]


def test_core_root_holds_only_the_entry_modules():
    loose = sorted(p.name for p in CORE.glob("*.py"))
    assert loose == [
        "__init__.py", "_moved.py", "actions.py", "director.py", "prompts.py", "quickstart.py",
    ]  # fmt: skip


def test_moved_modules_keep_their_old_import_paths():
    code = (
        "import warnings, importlib, json\n"
        "from flowsteer._moved import MOVED\n"
        "out = {}\n"
        "for old, new in MOVED.items():\n"
        "    with warnings.catch_warnings(record=True) as caught:\n"
        "        warnings.simplefilter('always')\n"
        "        module = importlib.import_module(old)\n"
        "    out[old] = [module is importlib.import_module(new),\n"
        "                any(issubclass(w.category, DeprecationWarning) and new in str(w.message)\n"
        "                    for w in caught)]\n"
        "from flowsteer.policy import Policy\n"
        "from flowsteer.rl.policy import Policy as P2\n"
        "out['same class'] = [Policy is P2, True]\n"
        "print(json.dumps(out))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert len(result) >= 11
    assert all(v == [True, True] for v in result.values()), result
