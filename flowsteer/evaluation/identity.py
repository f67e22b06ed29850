"""`RunIdentity`: what an evaluation ran, written into its report and (minus the code version)
into its fingerprint.

A report is only worth keeping if it says which policy, backend, sampling settings, seeds and
data files produced it; the fingerprint is the part that decides the results, so a resumed run
with any of it changed is refused (`EpisodeStore`). The package version and git commit are
recorded but not fingerprinted: resuming after a code fix is allowed, and the report says which
code wrote it.
"""

from __future__ import annotations

import hashlib
import subprocess
from dataclasses import asdict, dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any


def file_sha256(path: str | Path) -> str:
    """The sha256 of a file (a directory: of its files' names and hashes, in name order)."""
    path = Path(path)
    digest = hashlib.sha256()
    if path.is_dir():
        for child in sorted(p for p in path.rglob("*") if p.is_file()):
            digest.update(str(child.relative_to(path)).encode())
            digest.update(file_sha256(child).encode())
        return digest.hexdigest()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def dataset_entry(source: str, path: str | Path, limit: int | None, tasks: int) -> dict[str, Any]:
    """One evaluation set as the identity records it (a hub name has no sha256)."""
    p = Path(path)
    sha = file_sha256(p) if p.exists() else "unknown (not a local file)"
    return {"source": source, "path": str(path), "sha256": sha, "limit": limit, "tasks": tasks}


def package_version() -> str:
    try:
        return metadata.version("flowsteer")
    except metadata.PackageNotFoundError:
        return "unknown"


def git_commit(where: str | Path | None = None) -> str:
    """The commit of the checkout holding this package (``-dirty`` if modified), or unknown."""
    cwd = Path(where) if where is not None else Path(__file__).resolve().parent
    try:
        out = subprocess.run(
            ["git", "describe", "--always", "--dirty", "--abbrev=40"],
            cwd=cwd,
            capture_output=True,
            text=True,
            timeout=10,
        )
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return out.stdout.strip() if out.returncode == 0 and out.stdout.strip() else "unknown"


@dataclass
class RunIdentity:
    """Everything that says what an evaluation ran.

    Attributes:
        command: ``eval``, ``test`` or ``run-workflow``.
        model: The policy's base model directory (``""``: no policy).
        adapter: A LoRA adapter directory loaded on it (``""``: none).
        checkpoint: A ``flowsteer fit`` checkpoint loaded into it (``""``: none).
        config: The fit config the checkpoint was read with (``""``: none).
        weights_sha256: sha256 of the adapter directory and the checkpoint file, so a
            checkpoint overwritten at the same path (``last.ckpt``) is another policy.
        engine: The engine that sampled the policy's turns.
        backend: The backend LLM's class path and init args.
        backend_model: What the backend serves (its model name or path, where it says).
        sampling: Policy sampling and episode settings (temperature, max turns, tokens, ...).
        executor: Workflow executor settings.
        seed: The seed of the policy's sampling.
        systems: The systems evaluated, policy first, then the baselines.
        datasets: One entry per evaluation set: source, path, sha256, limit, task count.
        fixed_workflows: The fixed baseline's workflow per task kind (JSON).
        version: ``importlib.metadata.version("flowsteer")``.
        commit: The git commit of the code (``unknown`` outside a checkout).
    """

    command: str
    model: str = ""
    adapter: str = ""
    checkpoint: str = ""
    config: str = ""
    weights_sha256: dict[str, str] = field(default_factory=dict)
    engine: str = ""
    backend: dict[str, Any] = field(default_factory=dict)
    backend_model: str = ""
    sampling: dict[str, Any] = field(default_factory=dict)
    executor: dict[str, Any] = field(default_factory=dict)
    seed: int = 0
    systems: list[str] = field(default_factory=list)
    datasets: list[dict[str, Any]] = field(default_factory=list)
    fixed_workflows: dict[str, str] = field(default_factory=dict)
    version: str = field(default_factory=package_version)
    commit: str = field(default_factory=git_commit)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def fingerprint(self) -> dict[str, Any]:
        """The settings that decide the results (all but the code's version and commit)."""
        data = self.to_dict()
        data.pop("version")
        data.pop("commit")
        return data


__all__ = ["RunIdentity", "dataset_entry", "file_sha256", "git_commit", "package_version"]
