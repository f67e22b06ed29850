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


def run_training(argv: Sequence[str]) -> int:
    """Run LightningCLI on ``argv`` (``fit --config …``); 2 with a one-line error on bad input."""
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
    return 0
