"""`flowsteer sft --config …`: LightningCLI over `SFTModule` and `ExpertDataModule`.

A separate LightningCLI from `fit` (other module, other data), run as its ``fit`` subcommand.
The data module renders episodes with the policy's own tokenizer: ``data.tokenizer`` is linked
to ``model.policy.init_args.model`` (it is not set in the config). A bad config (unknown key, an empty
or impossible expert set) fails before the first step with one line.
"""

from __future__ import annotations

import os
import sys
import warnings
from collections.abc import Sequence

from lightning.pytorch.cli import LightningCLI

from datamodules.expert_datamodule import ExpertDataModule
from lightning_modules.sft_module import SFTModule


class SFTCLI(LightningCLI):
    """LightningCLI for the warm start: TensorBoard under ``runs/``, tokenizer linked."""

    def add_arguments_to_parser(self, parser) -> None:
        parser.set_defaults(
            {
                "trainer.logger": {
                    "class_path": "lightning.pytorch.loggers.TensorBoardLogger",
                    "init_args": {"save_dir": "runs"},
                }
            }
        )
        parser.link_arguments("model.policy.init_args.model", "data.tokenizer")


def run_sft(argv: Sequence[str]) -> int:
    """Run the warm start on ``argv`` (``sft --config …``); 2 with a one-line error on bad input."""
    try:
        with warnings.catch_warnings():
            # `sft` runs LightningCLI's `fit`, so the arguments are always passed explicitly.
            warnings.filterwarnings("ignore", message="LightningCLI's args parameter")
            SFTCLI(
                SFTModule,
                ExpertDataModule,
                args=["fit", *list(argv)[1:]],
                save_config_kwargs={"overwrite": True},
            )
    except (ValueError, FileNotFoundError, LookupError, TypeError) as err:
        if os.environ.get("FLOWSTEER_TRACEBACK"):
            raise
        print(f"flowsteer sft: error: {err}", file=sys.stderr)
        print("(set FLOWSTEER_TRACEBACK=1 to see where)", file=sys.stderr)
        return 2
    return 0


__all__ = ["SFTCLI", "run_sft"]
