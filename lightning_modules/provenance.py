"""Which code a run ran: the package version and the git commit, for every run's hparams."""

from __future__ import annotations

import subprocess
from pathlib import Path

import flowsteer

_REPO = Path(__file__).resolve().parents[1]


def git_commit() -> str:
    """The commit of the source tree the code runs from (``-dirty`` with local changes), or
    ``"unknown"`` outside a git checkout (an installed wheel) or without git."""
    if not (_REPO / ".git").exists():  # installed: a repository above site-packages is not ours
        return "unknown"
    try:
        commit = subprocess.run(
            ["git", "-C", str(_REPO), "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout.strip()
        changed = subprocess.run(
            ["git", "-C", str(_REPO), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return f"{commit}-dirty" if commit and changed else commit or "unknown"


def provenance() -> dict[str, str]:
    """``flowsteer_version`` and ``git_commit``, as logged with every run's hyper-parameters."""
    return {"flowsteer_version": flowsteer.__version__, "git_commit": git_commit()}
