"""What an evaluation reads from a ``flowsteer fit`` run: its saved ``config.yaml``.

LightningCLI saves the resolved config in the logger's run directory (``<save_dir>/<name>/
version_N/config.yaml``), while checkpoints go wherever ``ModelCheckpoint.dirpath`` says, so a
checkpoint does not point at its config. `find_config` looks next to the checkpoint, in its
parent, and in the parent's run directories, newest first; ``--config`` overrides the search.
From the config come the policy (base model, dtype, LoRA settings), the executor with its backend
(built from ``class_path`` like LightningCLI would) and the episode settings of the
`RolloutCallback`. Paths in the config are read relative to the current directory, as fit read
them.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml


def import_class(path: str, what: str) -> Any:
    """The class at ``module.Class``; a ValueError naming ``what`` if it is not there."""
    module, _, name = path.rpartition(".")
    if not module:
        raise ValueError(f"{what} {path!r}: expected a class path like package.module.Class")
    try:
        return getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError) as err:
        raise ValueError(f"{what} {path!r}: cannot import it ({err})") from None


def instantiate(spec: Any, what: str = "class_path") -> Any:
    """Build ``{"class_path": ..., "init_args": {...}}`` specs, nested ones first; other values
    are returned as they are."""
    if isinstance(spec, dict) and "class_path" in spec:
        cls = import_class(spec["class_path"], what)
        args = {k: instantiate(v, f"{what}.{k}") for k, v in (spec.get("init_args") or {}).items()}
        try:
            return cls(**args)
        except TypeError as err:
            raise ValueError(f"{what} {spec['class_path']}: bad init_args ({err})") from None
    if isinstance(spec, list):
        return [instantiate(v, what) for v in spec]
    return spec


def find_config(checkpoint: str | Path) -> Path:
    """The ``config.yaml`` of the fit run that wrote ``checkpoint`` (see the module docstring)."""
    ckpt = Path(checkpoint).resolve()
    candidates = [ckpt.parent / "config.yaml", ckpt.parent.parent / "config.yaml"]
    for base in (ckpt.parent, ckpt.parent.parent):
        candidates += sorted(base.glob("*/config.yaml")) + sorted(base.glob("*/*/config.yaml"))
    found = [c for c in dict.fromkeys(candidates) if c.is_file()]
    if not found:
        raise FileNotFoundError(
            f"--ckpt_path {checkpoint}: no config.yaml found next to it or in its run "
            "directories; pass the fit config with --config"
        )
    return max(found, key=lambda p: p.stat().st_mtime)


@dataclass
class FitConfig:
    """The parts of a fit config an evaluation uses.

    Attributes:
        path: The config file.
        model: The policy's base model.
        dtype: Its weight dtype.
        lora: LoRA settings (``None``: full fine-tuning).
        executor: The executor spec (``class_path`` + ``init_args``), if the config has one.
        rollout: The `RolloutCallback` init args (max_turns, max_new_tokens, ...).
        test_data: The ``data.test`` files (``data.val`` when there is no test set): each a
            dict with ``source``, ``path`` and optional ``split`` and ``limit``.
    """

    path: Path
    model: str
    dtype: str = "float32"
    lora: dict[str, Any] | None = None
    executor: dict[str, Any] | None = None
    rollout: dict[str, Any] = field(default_factory=dict)
    test_data: list[dict[str, Any]] = field(default_factory=list)

    @classmethod
    def read(cls, path: str | Path) -> FitConfig:
        path = Path(path)
        try:
            data = yaml.safe_load(path.read_text())
        except (OSError, yaml.YAMLError) as err:
            raise ValueError(f"--config {path}: cannot read it ({err})") from None
        try:
            policy = data["model"]["policy"]
            args = policy.get("init_args", policy)
            model = args["model"]
        except (KeyError, TypeError):
            raise ValueError(f"--config {path}: no model.policy.init_args.model") from None
        lora = args.get("lora")
        if isinstance(lora, dict) and "init_args" in lora:
            lora = lora["init_args"]
        rollout: dict[str, Any] = {}
        for callback in (data.get("trainer") or {}).get("callbacks") or []:
            if isinstance(callback, dict) and str(callback.get("class_path", "")).endswith(
                "RolloutCallback"
            ):
                rollout = dict(callback.get("init_args") or {})
        executor = rollout.pop("executor", None)
        data = data.get("data") or {}
        data = data.get("init_args", data)
        test = [dict(f) for f in (data.get("test") or data.get("val") or []) if isinstance(f, dict)]
        dtype = str(args.get("dtype", "float32"))
        return cls(path, str(model), dtype, lora, executor, rollout, test)


__all__ = ["FitConfig", "find_config", "import_class", "instantiate"]
