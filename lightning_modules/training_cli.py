"""`flowsteer fit | validate | test`: LightningCLI over `CWRPOModule` and `TaskDataModule`.

Every component is chosen by ``class_path`` in YAML (policy, optimizer, scheduler, engine,
executor, backend, reward, callbacks, strategy, logger). A bad config (unknown key, wrong type, a
missing model directory, an unreachable backend, a task file with bad records) fails before any
rollout with one line naming the setting, or the file, record and field.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence

from lightning.pytorch.cli import LightningCLI

from datamodules.task_datamodule import TaskDataModule
from lightning_modules.cwrpo_module import CWRPOModule


class FlowSteerCLI(LightningCLI):
    """LightningCLI with FlowSteer's defaults (a checkpoint every step, TensorBoard)."""

    def add_arguments_to_parser(self, parser) -> None:
        parser.set_defaults(
            {
                "trainer.logger": {
                    "class_path": "lightning.pytorch.loggers.TensorBoardLogger",
                    "init_args": {"save_dir": "runs"},
                }
            }
        )


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
            auto_configure_optimizers=False,
        )
    except (ValueError, FileNotFoundError, LookupError, TypeError) as err:
        if os.environ.get("FLOWSTEER_TRACEBACK"):
            raise
        print(f"flowsteer {argv[0]}: error: {err}", file=sys.stderr)
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
