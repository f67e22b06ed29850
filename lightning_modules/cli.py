"""The ``flowsteer`` command.

Training subcommands (``fit``, ``validate``, ``test``) go to LightningCLI, which builds everything
from YAML (`lightning_modules.training_cli`); the tool subcommands below are plain argparse over
core functions so they start fast and never import Lightning.
"""

from __future__ import annotations

import argparse
import collections
import json
import sys
from collections.abc import Sequence
from pathlib import Path

_TINY_SETTINGS = (  # (option, config.json key)
    ("hidden_size", "hidden_size"),
    ("num_layers", "num_hidden_layers"),
    ("num_heads", "num_attention_heads"),
    ("num_kv_heads", "num_key_value_heads"),
    ("intermediate_size", "intermediate_size"),
)


_BUILD_ARGS = (  # what `build_tiny_model` records in flowsteer_tiny.json, minus its own fields
    "hidden_size",
    "num_layers",
    "num_heads",
    "num_kv_heads",
    "intermediate_size",
    "vocab_size",
    "seed",
)


def _built_with(out_dir: str) -> dict[str, object] | None:
    """The settings a tiny model in ``out_dir`` was built with, or None when unknown."""
    try:
        record = json.loads((Path(out_dir) / "flowsteer_tiny.json").read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(record, dict) or not all(name in record for name in _BUILD_ARGS):
        return None
    return {name: record[name] for name in _BUILD_ARGS}


def _tiny_model(args: argparse.Namespace) -> int:
    from flowsteer.models.tiny import build_tiny_model

    config_file = Path(args.out_dir) / "config.json"
    asked = {name: getattr(args, name) for name in _BUILD_ARGS}
    if config_file.is_file() and not args.overwrite and _built_with(args.out_dir) == asked:
        # The same build again (e.g. the README's install command run twice): nothing to do.
        print(f"tiny policy already in {args.out_dir} with these settings; kept")
        return 0
    if config_file.is_file() and not args.overwrite:
        # Never keep an old model silently: the settings asked for may not be the ones it has.
        try:
            config = json.loads(config_file.read_text())
            has = ", ".join(f"{opt}={config.get(key)}" for opt, key in _TINY_SETTINGS)
        except (OSError, ValueError):
            has = "unreadable config.json"
        raise ValueError(
            f"{args.out_dir} already holds a model ({has}); pass --overwrite to rebuild it "
            "with the settings given, or choose another directory"
        )
    out = build_tiny_model(
        args.out_dir,
        hidden_size=args.hidden_size,
        num_layers=args.num_layers,
        num_heads=args.num_heads,
        num_kv_heads=args.num_kv_heads,
        intermediate_size=args.intermediate_size,
        vocab_size=args.vocab_size,
        seed=args.seed,
        overwrite=args.overwrite,
    )
    print(f"tiny policy saved to {out}")
    return 0


def _tasks(args: argparse.Namespace) -> int:
    from flowsteer.tasks import read_tasks

    result = read_tasks(
        args.source, args.path, args.split, args.limit, "skip" if args.skip_invalid else "raise"
    )
    kinds = collections.Counter(t.kind for t in result.tasks)
    print(f"{len(result.tasks)} tasks ({', '.join(f'{k}: {n}' for k, n in sorted(kinds.items()))})")
    if result.skipped:
        print(f"{len(result.skipped)} bad records skipped; first: {result.skipped[0]}")
    for task in result.tasks[: args.show]:  # --show is checked to be >= 0
        print(json.dumps(task.to_dict(), ensure_ascii=False))
    return 0


def _quickstart(args: argparse.Namespace) -> int:
    import asyncio

    from flowsteer.quickstart import EXAMPLES, format_rows, run_quickstart

    example_data = EXAMPLES / "data"

    rows = asyncio.run(
        run_quickstart(
            args.out_dir, args.data or example_data, max_turns=args.max_turns, seed=args.seed
        )
    )
    print(format_rows(rows))
    return 0


def _non_negative(text: str) -> int:
    """argparse type: a whole number >= 0 (``--show -1`` must not mean "all but one")."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {value}")
    return value


def _plot(args: argparse.Namespace) -> int:
    from flowsteer.evaluation.curves import plot_curves

    path = plot_curves(args.run_dir, args.out, tuple(args.tags) if args.tags else None)
    print(f"curves written to {path}")
    return 0


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="flowsteer",
        description="Train and use a Flow-Director: a small LLM policy that builds agentic workflows.",
    )
    from flowsteer import __version__

    parser.add_argument("--version", action="version", version=f"flowsteer {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, what in (
        ("fit", "train a policy with CWRPO from a YAML config (flowsteer fit --config ...)"),
        ("validate", "play greedy episodes on the validation tasks and report accuracy"),
        ("test", "play greedy episodes on the test tasks and report accuracy"),
        ("sft", "warm-start a policy on synthetic expert episodes (flowsteer sft --config ...)"),
    ):
        sub.add_parser(name, help=what, add_help=False)

    tiny = sub.add_parser("tiny-model", help="build a tiny offline Qwen3 policy + tokenizer")
    tiny.add_argument("out_dir", help="directory to save the model and tokenizer to")
    tiny.add_argument("--hidden-size", type=int, default=64)
    tiny.add_argument("--num-layers", type=int, default=2)
    tiny.add_argument("--num-heads", type=int, default=4)
    tiny.add_argument("--num-kv-heads", type=int, default=2)
    tiny.add_argument("--intermediate-size", type=int, default=128)
    tiny.add_argument("--vocab-size", type=int, default=1024)
    tiny.add_argument("--seed", type=int, default=0)
    tiny.add_argument(
        "--overwrite",
        "--force",
        action="store_true",
        help="rebuild if the directory already holds a model (without it, that is an error)",
    )
    tiny.set_defaults(run=_tiny_model)

    tasks = sub.add_parser("tasks", help="load a dataset in its native schema and summarise it")
    tasks.add_argument(
        "source",
        help="gsm8k, math, hotpotqa, squad_v2, mbpp, humaneval; for evaluation triviaqa, "
        "nq_open, math_qa, aime, apps, ds1000",
    )
    tasks.add_argument(
        "path", help="a .json/.jsonl/.jsonl.gz/.parquet file, a directory, or a hub name"
    )
    tasks.add_argument("--split", default=None)
    tasks.add_argument("--limit", type=_non_negative, default=None)
    tasks.add_argument(
        "--skip-invalid", action="store_true", help="skip bad records and report them"
    )
    tasks.add_argument(
        "--show", type=_non_negative, default=1, help="print this many tasks as JSON (>= 0)"
    )
    tasks.set_defaults(run=_tasks)

    plot = sub.add_parser("plot", help="draw a run's training curves from its TensorBoard logs")
    plot.add_argument("run_dir", help="the run's log directory (e.g. runs/quickstart)")
    plot.add_argument("--out", default=None, help="the PNG to write (default RUN_DIR/curves.png)")
    plot.add_argument(
        "--tags",
        nargs="+",
        default=None,
        help="scalar tags to draw (default: rewards, rates, loss)",
    )
    plot.set_defaults(run=_plot)

    quick = sub.add_parser("quickstart", help="the CPU quickstart: tiny policy on sample tasks")
    quick.add_argument("--out-dir", default="runs/quickstart", help="where the tiny policy is kept")
    quick.add_argument("--data", type=Path, default=None, help="folder with the sample datasets")
    quick.add_argument("--max-turns", type=int, default=4, help="turns per tiny-policy episode")
    quick.add_argument("--seed", type=int, default=0)
    quick.set_defaults(run=_quickstart)

    from flowsteer.evaluation.commands import add_commands

    add_commands(sub)  # eval, run-workflow
    from flowsteer.orchestration.command import add_command

    add_command(sub)  # orchestrate
    return parser


TRAINING_COMMANDS = ("fit", "validate", "test")


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``flowsteer`` console script."""
    args_list = list(sys.argv[1:] if argv is None else argv)
    if args_list and args_list[0] in TRAINING_COMMANDS:
        from lightning_modules.training_cli import run_training

        return run_training(args_list)
    if args_list and args_list[0] == "sft":
        from lightning_modules.sft_cli import run_sft

        return run_sft(args_list)
    parser = _parser()
    args = parser.parse_args(args_list)
    if args.command is None:
        parser.print_help()
        return 0
    try:
        return args.run(args)
    except (ValueError, FileNotFoundError) as err:
        print(f"flowsteer {args.command}: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
