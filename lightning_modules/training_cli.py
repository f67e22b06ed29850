"""`flowsteer fit | validate | test`: LightningCLI over `CWRPOModule` and `TaskDataModule`.

Every component is chosen by ``class_path`` in YAML (policy, optimizer, scheduler, engine,
executor, backend, reward, callbacks, strategy, logger). A bad config (unknown key, wrong type, a
missing model directory, an unreachable backend, a task file with bad records) fails before any
rollout with one line naming the setting, or the file, record and field.
"""

from __future__ import annotations

import os
import re
import sys
import warnings
from collections.abc import Sequence
from typing import NoReturn

from lightning.pytorch.cli import LightningArgumentParser, LightningCLI

from datamodules.task_datamodule import TaskDataModule
from lightning_modules.cwrpo_module import CWRPOModule

# Lightning 2.6.6's own pytree helper (lightning/pytorch/utilities/_pytree.py) builds a
# `LeafSpec()`, which torch 2.13 deprecates with a FutureWarning on every fit. Nothing of ours
# calls it and a user cannot act on it: drop exactly that message, from exactly that module.
warnings.filterwarnings(
    "ignore",
    message=r"`isinstance\(treespec, LeafSpec\)` is deprecated",
    category=FutureWarning,
    module=r"lightning\.pytorch\.utilities\._pytree",
)


class ConfigError(ValueError):
    """A config the parser refused, condensed to one line (`run_training` prints it)."""


class _Parser(LightningArgumentParser):
    """Parse errors as one line naming the setting, not usage plus a dump of every union member
    tried (`FLOWSTEER_TRACEBACK=1` restores jsonargparse's own report)."""

    def error(self, message: str, ex: Exception | None = None) -> NoReturn:
        if not self.exit_on_error or os.environ.get("FLOWSTEER_TRACEBACK"):
            super().error(message, ex)  # jsonargparse handles it itself (or the user asked)
        raise ConfigError(_condense(message)) from ex


class FlowSteerCLI(LightningCLI):
    """LightningCLI over FlowSteer's module and data.

    No logger or checkpoint directory is pinned here: Lightning's default logger (TensorBoard)
    writes under ``trainer.default_root_dir`` and so does `StepCheckpointCallback`, so
    ``--trainer.default_root_dir DIR`` moves a whole run.
    """


def _pop_option(argv: list[str], name: str) -> str | None:
    """Remove ``name VALUE`` / ``name=VALUE`` from ``argv``; returns the (last) value."""
    value = None
    for i in range(len(argv) - 1, -1, -1):
        if argv[i] == name and i + 1 < len(argv):
            value = value if value is not None else argv[i + 1]
            del argv[i : i + 2]
        elif argv[i].startswith(name + "="):
            value = value if value is not None else argv[i].split("=", 1)[1]
            del argv[i]
    return value


def _option(argv: Sequence[str], name: str) -> str | None:
    found = None
    for i, arg in enumerate(argv):
        if arg == name and i + 1 < len(argv):
            found = argv[i + 1]
        elif arg.startswith(name + "="):
            found = arg.split("=", 1)[1]
    return found


def run_training(argv: Sequence[str]) -> int:
    """Run LightningCLI on ``argv`` (``fit --config …``); 2 with a one-line error on bad input.

    ``test … --report DIR`` also writes the evaluation report of ``flowsteer eval`` for the
    tested policy (`flowsteer.evaluation.commands.report_after_test`)."""
    report = None
    if argv and argv[0] == "test":
        rest = list(argv)
        report = _pop_option(rest, "--report")
        if report is not None:
            if _option(rest, "--config") is None:
                print("flowsteer test: error: --report needs --config FILE", file=sys.stderr)
                return 2
            argv = rest
    try:
        FlowSteerCLI(
            CWRPOModule,
            TaskDataModule,
            # From the console script argv is sys.argv[1:]; LightningCLI reads that itself.
            args=None if list(argv) == sys.argv[1:] else list(argv),
            save_config_kwargs={"overwrite": True},
            parser_class=_Parser,
            auto_configure_optimizers=False,
        )
    except (ValueError, FileNotFoundError, LookupError, TypeError) as err:
        if os.environ.get("FLOWSTEER_TRACEBACK"):
            raise
        print(f"flowsteer {argv[0]}: error: {_one_line(err)}", file=sys.stderr)
        print("(set FLOWSTEER_TRACEBACK=1 to see where)", file=sys.stderr)
        return 2
    if report is not None:
        from flowsteer.evaluation.commands import report_after_test

        try:
            return report_after_test(
                str(_option(argv, "--config")), _option(argv, "--ckpt_path"), report
            )
        except (ValueError, FileNotFoundError) as err:
            print(f"flowsteer test: error: {err}", file=sys.stderr)
            return 2
    return 0


# How jsonargparse words the errors it wraps around a component's own (the `__cause__`).
_WRAPPERS = ("Does not validate against any of the Union subtypes", "Problem with given class_path")
# Lines of its union dump that say nothing about the cause.
_GENERIC = ("Expected a <class 'NoneType'>", "Not a valid subclass of", "Does not validate against")


def _one_line(err: BaseException) -> str:
    """The error that matters, on one line.

    A component that refuses its settings inside a union-typed option (an executor's backend in
    ``trainer.callbacks``) reaches us wrapped by jsonargparse in "Does not validate against any
    of the Union subtypes" plus a dump of every subtype tried; the component's own message is the
    innermost cause. It is prefixed with the refusing class when the message does not name it.
    """
    inner = err
    while inner.__cause__ is not None and str(inner).startswith(_WRAPPERS):
        inner = inner.__cause__
    text = str(inner)
    if text.startswith(_WRAPPERS):  # a dump with no cause attached: its first specific line
        reasons = [
            line.strip()[2:]
            for line in text.splitlines()
            if line.strip().startswith("- ") and not line.strip()[2:].startswith(_GENERIC)
        ]
        text = reasons[0] if reasons else text.splitlines()[0]
    message = " ".join(text.split())
    if inner is not err:
        tb = inner.__traceback__
        while tb is not None and tb.tb_next is not None:
            tb = tb.tb_next
        owner = tb.tb_frame.f_locals.get("self") if tb is not None else None
        if tb is not None and tb.tb_frame.f_code.co_name == "__init__" and owner is not None:
            name = type(owner).__name__
            if not message.startswith(name):
                message = f"{name}: {message}"
    return message


def _condense(message: str) -> str:
    """jsonargparse's nested report as ``setting.path: reason`` (the first specific reason).

    ``Parser key "model.policy":`` / ``Problem with given class_path '…LoraSettings':`` /
    ``Parser key "r":`` / ``Expected a <class 'int'>. Got value: x`` becomes
    ``model.policy.lora.r: Expected a <class 'int'>. Got value: x``; bullets that only say a
    value is not None or not another subclass are skipped with everything under them.
    """
    keys: list[str] = []
    skip_below: int | None = None
    for line in message.splitlines():
        indent, text = len(line) - len(line.lstrip()), line.strip()
        if skip_below is not None:
            if indent > skip_below:
                continue
            skip_below = None
        if text.startswith("- "):
            text = text[2:]
            if text.startswith(_GENERIC):
                skip_below = indent
                continue
        if not text or text.startswith(
            ("Subtypes:", "Errors:", "Given value", "Does not validate")
        ):
            continue
        if key := re.fullmatch(r'Parser key "(.+)":', text):
            keys.append(key[1])
        elif not re.fullmatch(r"Problem with given class_path '(.+)':", text):
            return f"{'.'.join(keys)}: {text}" if keys else text
    return " ".join(message.split())
