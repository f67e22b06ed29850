"""``flowsteer eval`` and ``flowsteer run-workflow``: argparse glue over `run_evaluation`.

`add_commands` registers both subcommands on the ``flowsteer`` parser; each handler turns its
arguments into a `RunIdentity`, the backend and executor, the tasks and (for ``eval``) the
policy players, and calls the core. Bad input raises ValueError or FileNotFoundError with one
line naming the option, which the ``flowsteer`` entry point prints.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from flowsteer.evaluation.fit_config import FitConfig
    from flowsteer.tasks import Task

EXECUTOR_DEFAULTS = {"node_timeout_s": 120.0, "sandbox_timeout_s": 5.0, "temperature": 0.0}


def _json_object(text: str, option: str) -> dict[str, Any]:
    try:
        value = json.loads(text)
    except ValueError as err:
        raise ValueError(f"{option}: not valid JSON ({err})") from None
    if not isinstance(value, dict):
        raise ValueError(f"{option}: expected a JSON object, got {type(value).__name__}")
    return value


def parse_data(
    items: list[str], limit: int | None, split: str | None, limits: list[int | None] | None = None
) -> tuple[list[Task], list]:
    """Load every ``SOURCE=PATH`` (``limits``: one limit per item instead of ``limit``); returns
    the tasks and the identity's dataset entries."""
    from flowsteer.evaluation.identity import dataset_entry
    from flowsteer.tasks import load_tasks

    if not items:
        raise ValueError("give at least one evaluation set with --data SOURCE=PATH")
    tasks: list[Task] = []
    entries = []
    for n, item in enumerate(items):
        source, sep, path = item.partition("=")
        if not sep or not source or not path:
            raise ValueError(f"--data {item!r}: expected SOURCE=PATH, e.g. gsm8k=data/test.jsonl")
        if limits is not None:
            limit = limits[n]
        loaded = load_tasks(source, path, split=split, limit=limit)
        if not loaded:
            raise ValueError(f"--data {item}: no tasks in {path}")
        tasks += loaded
        entries.append(dataset_entry(source, path, limit, len(loaded)))
    return tasks, entries


def _backend_spec(args: argparse.Namespace, config: FitConfig | None) -> dict[str, Any]:
    """The executor spec: ``--backend`` (+ ``--backend-args``) or the fit config's executor."""
    executor_args = {**EXECUTOR_DEFAULTS, **_json_object(args.executor_args, "--executor-args")}
    if args.backend:
        backend = {"class_path": args.backend,
                   "init_args": _json_object(args.backend_args, "--backend-args")}  # fmt: skip
        return {"class_path": "flowsteer.canvas.executor.WorkflowExecutor",
                "init_args": {**executor_args, "backend": backend}}  # fmt: skip
    if config is not None and config.executor is not None:
        return config.executor
    raise ValueError("give the backend LLM with --backend CLASS_PATH [--backend-args JSON]")


def _build_executor(spec: dict[str, Any]) -> Any:
    from flowsteer.canvas.executor import WorkflowExecutor
    from flowsteer.evaluation.fit_config import instantiate

    executor = instantiate(spec, "--backend")
    if not isinstance(executor, WorkflowExecutor):
        raise ValueError(f"the executor must be a WorkflowExecutor, got {type(executor).__name__}")
    return executor


def _backend_model(backend: Any) -> str:
    for name in ("model", "model_path", "model_name", "name"):
        value = getattr(backend, name, None)
        if isinstance(value, str) and value:
            return value
    return type(backend).__name__


def _identity_executor(spec: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    args = dict(spec.get("init_args") or {})
    backend = args.pop("backend", {})
    return backend, {"class_path": spec.get("class_path"), **args}


async def _close(executor: Any) -> None:
    close = getattr(executor.backend, "aclose", None)
    if close is not None:
        await close()


# ---------------------------------------------------------------------------------------- eval


def report_after_test(config: str, ckpt_path: str | None, out: str) -> int:
    """``flowsteer test --config C [--ckpt_path P] --report DIR``: the eval report of the policy
    the test just scored (on the config's test sets, or val when it has none), with every
    baseline, the config's backend and turn limits. Command-line overrides of the config are
    not seen here: the report reads the config file."""
    from flowsteer.evaluation.fit_config import FitConfig

    files = FitConfig.read(config).test_data
    if not files:
        raise ValueError(f"--report: the config {config} has no data.test (or data.val) sets")
    args = _parser_for_eval().parse_args(
        ["--config", config, "--out", out]
        + (["--ckpt_path", ckpt_path] if ckpt_path else [])
        + [a for f in files for a in ("--data", f"{f['source']}={f['path']}")]
    )
    args.limits = [f.get("limit") for f in files]
    return run_eval(args)


def _parser_for_eval() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="flowsteer test --report")
    _eval_arguments(parser)
    return parser


def run_eval(args: argparse.Namespace) -> int:
    """``flowsteer eval``."""
    from flowsteer.evaluation.baselines import fixed_workflow
    from flowsteer.evaluation.evaluation import parse_baselines, run_evaluation
    from flowsteer.evaluation.fit_config import FitConfig, find_config
    from flowsteer.evaluation.identity import RunIdentity

    baselines = parse_baselines(args.baselines)
    config = None
    if args.ckpt_path:
        if not Path(args.ckpt_path).is_file():
            raise FileNotFoundError(f"--ckpt_path {args.ckpt_path}: no such file")
        config = FitConfig.read(args.config or find_config(args.ckpt_path))
    elif args.config:
        config = FitConfig.read(args.config)
    model = args.model or (config.model if config else None)
    trained = bool(args.adapter or args.ckpt_path)
    if not model:
        raise ValueError("give the policy with --model DIR (and --adapter), or --ckpt_path")
    if args.concurrency < 1:
        raise ValueError(f"--concurrency must be >= 1, got {args.concurrency}")
    tasks, datasets = parse_data(args.data, args.limit, args.split, getattr(args, "limits", None))
    spec = _backend_spec(args, config)
    rollout = config.rollout if config else {}
    max_turns = args.max_turns or int(rollout.get("max_turns", 8))
    max_new = args.max_new_tokens or int(rollout.get("max_new_tokens", 512))
    max_context = args.max_context_tokens or int(rollout.get("max_context_tokens", 16384))
    notes = []
    if "untrained" in baselines and not trained:
        baselines.remove("untrained")
        notes.append("untrained baseline skipped: the policy is the base model itself")
    backend_spec, executor_identity = _identity_executor(spec)
    from flowsteer.evaluation.identity import file_sha256

    weights = {"adapter": args.adapter, "checkpoint": args.ckpt_path}
    identity = RunIdentity(
        command="eval",
        weights_sha256={k: file_sha256(v) for k, v in weights.items() if v},
        model=str(model),
        adapter=args.adapter or "",
        checkpoint=args.ckpt_path or "",
        config=str(config.path) if config else "",
        engine=args.engine,
        backend=backend_spec,
        sampling={
            "temperature": args.temperature,
            "max_new_tokens": max_new,
            "max_turns": max_turns,
            "max_context_tokens": max_context,
            "baseline_max_tokens": args.baseline_max_tokens,
            "enable_thinking": rollout.get("enable_thinking"),
        },
        executor=executor_identity,
        seed=args.seed,
        systems=["policy", *baselines],
        datasets=datasets,
        fixed_workflows={k: fixed_workflow(k).to_json() for k in sorted({t.kind for t in tasks})},
    )
    executor = _build_executor(spec)
    identity.backend_model = _backend_model(executor.backend)
    # Refuse a mismatched out dir before spending minutes loading models.
    from flowsteer.evaluation.store import EpisodeStore

    EpisodeStore(args.out, identity.fingerprint())

    from flowsteer.evaluation.policy_eval import PolicyPlayer, build_engine, load_policy_model
    from flowsteer.rewards import WorkflowReward
    from flowsteer.rollout.engine import SamplingParams
    from flowsteer.rollout.runner import RolloutRunner

    engine_args = _json_object(args.engine_args, "--engine-args")

    async def player(system: str, **load: Any) -> PolicyPlayer:
        loaded = load_policy_model(str(model), **load)
        engine = await build_engine(
            args.engine, loaded, engine_args, args.hf_batch_size, base_model=str(model),
            weights_changed=load.get("checkpoint") is not None, adapter=load.get("adapter"),
        )  # fmt: skip
        runner = RolloutRunner(
            engine, loaded[1], executor, WorkflowReward(), library=executor.library,
            max_turns=max_turns, max_context_tokens=max_context,
            sampling=SamplingParams(max_tokens=max_new, temperature=args.temperature),
            enable_thinking=rollout.get("enable_thinking"),
        )  # fmt: skip
        return PolicyPlayer(runner, system, args.concurrency, args.seed)

    lora = config.lora if config else None
    dtype = config.dtype if config else "float32"

    async def players() -> dict[str, PolicyPlayer]:
        # Built one at a time, inside the evaluation's event loop (engines may bind to it).
        out = {"policy": await player("policy", adapter=args.adapter, checkpoint=args.ckpt_path,
                                      lora=lora if args.ckpt_path else None, dtype=dtype)}  # fmt: skip
        if "untrained" in baselines:
            out["untrained"] = await player("untrained", dtype=dtype)
        return out

    async def main() -> dict[str, Any]:
        try:
            return await run_evaluation(
                args.out, identity, tasks, players=await players(), executor=executor, notes=notes,
                concurrency=args.concurrency, baseline_max_tokens=args.baseline_max_tokens,
            )  # fmt: skip
        finally:
            await _close(executor)

    import asyncio

    metrics = asyncio.run(main())
    _print_summary(metrics, args.out)
    return 0


def _print_summary(metrics: dict[str, Any], out: str) -> None:
    from flowsteer.evaluation.report import fmt

    for system, s in metrics["systems"].items():
        per = ", ".join(f"{d} {fmt(v['accuracy'])}" for d, v in s["datasets"].items())
        print(f"{system:<10} accuracy {fmt(s['overall']['accuracy'])} ({per})")
    print(f"report: {Path(out) / 'report.html'}")


# -------------------------------------------------------------------------------- run-workflow


def read_workflow(path: str) -> Any:
    from flowsteer.canvas.graph import WorkflowGraph

    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as err:
        raise FileNotFoundError(f"workflow file {path}: {err.strerror}") from None
    try:
        graph = WorkflowGraph.from_json(text)
    except ValueError as err:
        raise ValueError(f"workflow file {path}: {err}") from None
    if not len(graph):
        raise ValueError(f"workflow file {path}: the workflow is empty")
    return graph


def run_workflow_command(args: argparse.Namespace) -> int:
    """``flowsteer run-workflow``."""
    from flowsteer.evaluation.identity import RunIdentity
    from flowsteer.tasks import Task

    graph = read_workflow(args.file)
    if (args.question is None) == (not args.tasks):
        raise ValueError("give either --question TEXT or --tasks SOURCE=PATH (one of them)")
    spec = _backend_spec(args, None)
    executor = _build_executor(spec)
    issues = graph.validate(executor.library)
    if issues:
        raise ValueError(f"workflow file {args.file}: {issues[0]}")
    if args.question is not None:
        task = Task("question/0", "question", args.kind, args.question, "")
        import asyncio

        result = asyncio.run(_execute_once(executor, graph, task))
        print(f"answer: {result.answer if result.answer is not None else '(none)'}")
        print(f"workflow: {graph.to_dsl()}")
        print(f"backend: {result.calls} calls, {result.tokens} tokens")
        for error in result.errors:
            print(f"error: {error}")
        if args.save:
            from flowsteer.canvas.picture import save_workflow_picture

            print(f"picture: {save_workflow_picture(graph, args.save, executor.library)}")
        return 0
    if not args.out:
        raise ValueError("--tasks needs --out DIR for the report")
    tasks, datasets = parse_data(args.tasks, args.limit, args.split)
    from flowsteer.evaluation.evaluation import run_evaluation

    backend_spec, executor_identity = _identity_executor(spec)
    identity = RunIdentity(
        command="run-workflow",
        backend=backend_spec,
        backend_model=_backend_model(executor.backend),
        executor=executor_identity,
        systems=["workflow"],
        datasets=datasets,
        fixed_workflows={"workflow": graph.to_json()},
    )
    workflows = dict.fromkeys(("math", "qa", "code"), graph)

    async def main() -> dict[str, Any]:
        try:
            return await run_evaluation(
                args.out, identity, tasks, executor=executor, workflows=workflows,
                concurrency=args.concurrency, title=f"Workflow {Path(args.file).name}",
            )  # fmt: skip
        finally:
            await _close(executor)

    import asyncio

    metrics = asyncio.run(main())
    _print_summary(metrics, args.out)
    return 0


async def _execute_once(executor: Any, graph: Any, task: Task) -> Any:
    try:
        return await executor.execute(graph, task)
    finally:
        await _close(executor)


# ------------------------------------------------------------------------------------ parsers


def _backend_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--backend", default=None,
                        help="backend LLM class path, e.g. flowsteer.llm.OpenAIBackend")  # fmt: skip
    parser.add_argument("--backend-args", default="{}", help="the backend's init args as JSON")
    parser.add_argument("--executor-args", default="{}",
                        help="WorkflowExecutor init args as JSON (node_timeout_s, ...)")  # fmt: skip
    parser.add_argument("--concurrency", type=int, default=8, help="episodes in flight")
    parser.add_argument("--limit", type=int, default=None, help="tasks per dataset")
    parser.add_argument("--split", default=None, help="split of a directory or hub dataset")


def _eval_arguments(ev: argparse.ArgumentParser) -> None:
    """The options of ``flowsteer eval``."""
    ev.add_argument("--model", default=None, help="the policy's (base) model directory")
    ev.add_argument("--adapter", default=None, help="a LoRA adapter directory on --model")
    ev.add_argument("--ckpt_path", "--ckpt-path", dest="ckpt_path", default=None,
                    help="a flowsteer fit checkpoint (its config.yaml is found, or --config)")  # fmt: skip
    ev.add_argument("--config", default=None, help="the fit config of --ckpt_path")
    ev.add_argument("--data", action="append", default=[], metavar="SOURCE=PATH",
                    help="an evaluation set (repeat for several)")  # fmt: skip
    ev.add_argument("--out", required=True, help="the report directory (resumed if it exists)")
    ev.add_argument("--baselines", default="direct,cot,fixed,untrained",
                    help="comma list of direct,cot,fixed,untrained ('none': no baselines)")  # fmt: skip
    ev.add_argument("--engine", default="hf", help="'hf' or an engine class path (vLLM)")
    ev.add_argument("--engine-args", default="{}", help="init args of a class-path engine (JSON)")
    ev.add_argument("--hf-batch-size", type=int, default=None)
    ev.add_argument("--max-turns", type=int, default=None, help="default: config's, else 8")
    ev.add_argument("--max-new-tokens", type=int, default=None, help="per turn; default 512")
    ev.add_argument("--max-context-tokens", type=int, default=None, help="default 16384")
    ev.add_argument("--temperature", type=float, default=0.0, help="0: greedy (default)")
    ev.add_argument("--baseline-max-tokens", type=int, default=None,
                    help="completion budget of the direct/cot baselines")  # fmt: skip
    ev.add_argument("--seed", type=int, default=0)
    _backend_options(ev)


def add_commands(sub: Any) -> None:
    """Register ``eval`` and ``run-workflow`` on the ``flowsteer`` subparsers."""
    ev = sub.add_parser("eval", help="evaluate a policy against baselines; write a report")
    _eval_arguments(ev)
    ev.set_defaults(run=run_eval)

    rw = sub.add_parser("run-workflow", help="run a saved workflow (JSON) on a question or tasks")
    rw.add_argument("file", help="a workflow saved with WorkflowGraph.to_json")
    rw.add_argument("--question", default=None, help="one question to answer")
    rw.add_argument("--kind", default="qa", choices=("math", "qa", "code"),
                    help="the task kind of --question")  # fmt: skip
    rw.add_argument("--save", default=None, help="write the workflow's picture here (.svg/.png)")
    rw.add_argument("--tasks", action="append", default=[], metavar="SOURCE=PATH")
    rw.add_argument("--out", default=None, help="report directory for --tasks")
    _backend_options(rw)
    rw.set_defaults(run=run_workflow_command)


__all__ = ["add_commands", "parse_data", "read_workflow", "run_eval", "run_workflow_command"]
