"""``flowsteer orchestrate``: argparse glue over `OrchestrationSession` and the terminal view.

The policy is a model directory (``--model``, with ``--adapter``), a fit checkpoint
(``--ckpt_path`` and its saved config), an OpenAI-compatible server (``--server URL``) or any
`LLMBackend` class (``--policy-class``, e.g. a scripted policy in tests). Every import that is
not argparse happens inside `run_orchestrate`, so ``flowsteer --help`` stays fast.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any


def add_command(sub: Any) -> None:
    """Register ``orchestrate`` on the ``flowsteer`` subparsers."""
    p = sub.add_parser(
        "orchestrate", help="build one workflow with the Flow-Director, steered live"
    )
    p.add_argument("--model", default=None, help="the policy's (base) model directory")
    p.add_argument("--adapter", default=None, help="a LoRA adapter directory on --model")
    p.add_argument("--ckpt_path", "--ckpt-path", dest="ckpt_path", default=None,
                   help="a flowsteer fit checkpoint (its config.yaml is found, or --config)")  # fmt: skip
    p.add_argument("--config", default=None, help="the fit config of --ckpt_path")
    p.add_argument("--server", default=None, help="an OpenAI-compatible server URL (…/v1)")
    p.add_argument("--server-model", default="policy", help="the model name --server serves")
    p.add_argument("--policy-class", default=None, help="an LLMBackend class path as the policy")
    p.add_argument("--policy-args", default="{}", help="its init args as JSON")
    p.add_argument("--question", default=None, help="the question to build a workflow for")
    p.add_argument("--kind", default="qa", choices=("math", "qa", "code"),
                   help="the task kind of --question")  # fmt: skip
    p.add_argument("--task", default=None, metavar="SOURCE=PATH", help="a task file")
    p.add_argument("--index", type=int, default=0, help="which task of --task")
    p.add_argument("--backend", default=None, help="backend LLM class path")
    p.add_argument("--backend-args", default="{}", help="the backend's init args as JSON")
    p.add_argument("--executor-args", default="{}", help="WorkflowExecutor init args as JSON")
    p.add_argument("--max-turns", type=int, default=None)
    p.add_argument("--max-new-tokens", type=int, default=None)
    p.add_argument("--temperature", type=float, default=0.0)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--save", default=None, help="write the workflow JSON here (+ a .png beside)")
    p.add_argument("--no-interactive", action="store_true", help="run to the end, no prompts")
    p.set_defaults(run=run_orchestrate)


def _task(args: argparse.Namespace) -> Any:
    from flowsteer.evaluation.commands import parse_data
    from flowsteer.tasks import Task

    if (args.question is None) == (args.task is None):
        raise ValueError("give either --question TEXT or --task SOURCE=PATH --index N")
    if args.question is not None:
        if not args.question.strip():
            raise ValueError("--question is empty")
        return Task("question/0", "question", args.kind, args.question, "")
    tasks, _ = parse_data([args.task], None, None)
    if not 0 <= args.index < len(tasks):
        raise ValueError(f"--index {args.index}: {args.task} has {len(tasks)} tasks")
    return tasks[args.index]


def _policy(args: argparse.Namespace, config: Any) -> Any:
    from flowsteer.evaluation.commands import _json_object
    from flowsteer.evaluation.fit_config import import_class

    given = [x for x in ("model", "server", "policy_class") if getattr(args, x)]
    if len(given) > 1:
        raise ValueError("give one policy: --model (with --adapter), --server or --policy-class")
    if args.policy_class:
        cls = import_class(args.policy_class, "--policy-class")
        return cls(**_json_object(args.policy_args, "--policy-args"))
    if args.server:
        from flowsteer.llm.openai_backend import OpenAIBackend

        return OpenAIBackend(args.server_model, base_url=args.server, api_key_env=None,
                             timeout_s=60.0, max_retries=1)  # fmt: skip
    model = args.model or (config.model if config else None)
    if not model:
        raise ValueError(
            "give the policy: --model DIR, --ckpt_path, --server URL or --policy-class"
        )
    from flowsteer.orchestration.local_policy import LocalPolicy

    return LocalPolicy(
        model,
        adapter=args.adapter,
        checkpoint=args.ckpt_path,
        lora=config.lora if config and args.ckpt_path else None,
        dtype=config.dtype if config else "float32",
    )


def run_orchestrate(args: argparse.Namespace) -> int:
    """``flowsteer orchestrate``; exit 130 after Ctrl-C (with --save, what exists is saved)."""
    import asyncio

    from flowsteer.canvas import Canvas
    from flowsteer.evaluation.commands import _backend_spec, _build_executor
    from flowsteer.evaluation.fit_config import FitConfig, find_config

    try:
        from rich.console import Console
    except ImportError:
        raise ValueError("flowsteer orchestrate needs rich: pip install 'rich>=13'") from None
    from flowsteer.orchestration.session import OrchestrationSession
    from flowsteer.orchestration.terminal import HELP, show

    config = None
    if args.ckpt_path:
        if not Path(args.ckpt_path).is_file():
            raise FileNotFoundError(f"--ckpt_path {args.ckpt_path}: no such file")
        config = FitConfig.read(args.config or find_config(args.ckpt_path))
    task = _task(args)
    executor = _build_executor(_backend_spec(args, config))
    rollout = config.rollout if config else {}
    max_turns = args.max_turns or int(rollout.get("max_turns", 8))
    sampling: dict[str, Any] = {"temperature": args.temperature, "seed": args.seed}
    if args.max_new_tokens:
        sampling["max_tokens"] = args.max_new_tokens
    policy = _policy(args, config)
    canvas = Canvas(task, executor=executor, max_turns=max_turns)
    session = OrchestrationSession(policy, canvas, sampling)
    console = Console(highlight=False)
    console.print(f"[bold]question[/] ({task.id}): {task.question}")
    interrupted = False

    # input() runs on the main thread between turns (not in a worker thread), so Ctrl-C at the
    # prompt interrupts at once; all turns share one event loop (backends may bind to it).
    loop = asyncio.new_event_loop()
    try:
        if args.no_interactive:
            while not session.done:
                event = loop.run_until_complete(session.policy_turn())
                show(console, session)
                if event.kind == "error":
                    break
        else:
            console.print(HELP)
            while not session.done:
                line = input("flowsteer> ")
                loop.run_until_complete(session.handle(line))
                show(console, session)
    except (KeyboardInterrupt, EOFError) as err:
        interrupted = isinstance(err, KeyboardInterrupt)
        console.print("\n[yellow]interrupted[/]" if interrupted else "")
    finally:
        loop.close()
    graph = canvas.graph
    console.print(f"[bold]answer:[/] {session.answer if session.answer is not None else '(none)'}")
    console.print(f"[bold]workflow:[/] {graph.to_dsl() or '(empty)'}")
    console.print("[bold]mermaid:[/]")
    console.print(graph.to_mermaid(), markup=False)
    if args.save:
        _save(graph, canvas.library, Path(args.save), console)
    sys.stdout.flush()
    return 130 if interrupted else 0


def _save(graph: Any, library: Any, path: Path, console: Any) -> None:
    from flowsteer.canvas.picture import save_workflow_picture

    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(graph.to_json(indent=2) + "\n", encoding="utf-8")
    console.print(f"saved {path}")
    if len(graph):  # an empty workflow has no picture
        picture = save_workflow_picture(graph, path.with_suffix(".png"), library)
        console.print(f"saved {picture}")


__all__ = ["add_command", "run_orchestrate"]
