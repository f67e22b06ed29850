"""The workflow executor: runs a `WorkflowGraph` on a task with operators on a backend LLM.

Semantics (docs/design.md §2), one top-level step after another, each reading the `WorkflowState`
the previous one left:

* an operator step runs once and folds its output into the state (a new plan, candidate,
  verdict, feedback);
* ``parallel`` runs its children concurrently (`asyncio.gather`) on the *same* input state;
  the answers they produce become ``state.candidates`` (for an ensemble operator) and the
  first of them the current candidate;
* ``conditional`` runs its checker; when it fails, the on-fail branch runs; when it passes,
  the on-pass branch runs, or nothing (``done``: the candidate passes through). A checker that
  could not reach a verdict (its call failed) counts as failed;
* ``loop`` runs its body in order up to ``count`` times and stops as soon as a checker in the
  body passes (the rest of that iteration is skipped too: revising an answer a checker just
  accepted can only make it worse). A body without a checker runs ``count`` times.

Failures never escape `execute`: an unknown operator, an exception in an operator, a node past
`node_timeout_s`, a backend error value: each becomes a `NodeRecord.error` and a line in
`ExecutionResult.errors` (``"<Name>Error: ... [n3 Programmer]"``, so the canvas feedback can
key its repair suggestion on the exception name), and the run goes on with the next node.

Budget: each execution sees the backend through a meter that refuses calls past `max_calls`
or once `max_tokens` is reached (tokens are known only after a call, so the concurrent calls
of one parallel block can overshoot by their own size). Once the budget is spent no further
node is started, and an error names what was skipped (later steps, or a loop's remaining
iterations).

Prefix cache: see `flowsteer.canvas.prefix_cache`. One cache per episode scope (the canvas
passes its scope; an execution without one caches nothing), and a replayed step charges the
calls and tokens it cost to the budget; `cache_stats` counts hits.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import Sequence
from typing import Any

from flowsteer.canvas.execution import ExecutionResult, ExecutionScope, NodeRecord
from flowsteer.canvas.graph import Node, WorkflowGraph
from flowsteer.canvas.prefix_cache import CacheStats, PrefixCache, ScopedCaches
from flowsteer.llm.backend import Completion, LLMBackend, Message
from flowsteer.operators.base import OperatorOutput, OperatorSettings, WorkflowState
from flowsteer.operators.library import OperatorLibrary
from flowsteer.operators.registry import build_operator
from flowsteer.tasks.task import Task

BUDGET_ERROR = "BudgetExceeded"


class _Meter:
    """The backend as one execution sees it: counts calls and tokens, enforces the budget."""

    def __init__(self, backend: LLMBackend, max_calls: int, max_tokens: int) -> None:
        self.backend = backend
        self.max_calls = max_calls
        self.max_tokens = max_tokens
        self.calls = 0
        self.tokens = 0
        self.refused = 0
        self.cached_calls = 0

    def charge(self, calls: int, tokens: int) -> None:
        """Count a step replayed from the cache as the calls and tokens it replaces."""
        self.calls += calls
        self.tokens += tokens
        self.cached_calls += calls

    @property
    def exhausted(self) -> bool:
        return self.calls >= self.max_calls or self.tokens >= self.max_tokens

    def why(self) -> str:
        return (
            f"{BUDGET_ERROR}: workflow budget exhausted ({self.calls}/{self.max_calls} backend "
            f"calls, {self.tokens}/{self.max_tokens} tokens)"
        )

    async def complete(self, messages: Sequence[Message], **sampling: Any) -> Completion:
        if self.exhausted:
            self.refused += 1
            return Completion.failure(self.why(), attempts=0)
        self.calls += 1  # reserved before awaiting, so concurrent children respect max_calls
        try:
            reply = await self.backend.complete(messages, **sampling)
        except Exception as exc:  # a backend breaking its never-raise contract
            reply = Completion.failure(f"{type(exc).__name__}: {exc}")
        self.tokens += reply.usage.total_tokens
        return reply


@dataclasses.dataclass
class _Run:
    """Mutable bookkeeping of one execution."""

    meter: _Meter
    trace: list[NodeRecord] = dataclasses.field(default_factory=list)
    errors: list[str] = dataclasses.field(default_factory=list)
    outputs: dict[str, str] = dataclasses.field(default_factory=dict)


class WorkflowExecutor:
    """Runs workflows on a backend LLM; implements the canvas's `Executor` protocol.

    Args:
        backend: The backend LLM the operators call.
        library: The operator library (default prompts, checker categories, ``impl`` paths);
            ``None``: the default twelve operators.
        node_timeout_s: Wall-clock limit of one operator run (one loop iteration of a node);
            past it the node is cancelled and reported as a ``TimeoutError``.
        max_calls: Backend calls one execution may make.
        max_tokens: Backend tokens (prompt + completion) one execution may use.
        sandbox_timeout_s: Wall-clock limit of one sandboxed program (Programmer, Test).
        sandbox_memory_mb: Memory limit of one sandboxed program.
        programmer_retries: Extra attempts Programmer makes after a failed run, with the error.
        temperature: Sampling temperature of operator calls (``None``: the backend's default).
        max_tokens_per_call: Completion budget of one operator call (``None``: the backend's).
        max_output_chars: Each node output in the trace and `node_outputs` is cut to this.
        cache: Reuse cached results of the unchanged workflow prefix on re-execution within
            one episode (see `flowsteer.canvas.prefix_cache`).
        cache_size: Most cached steps of one episode (LRU).
    """

    def __init__(
        self,
        backend: LLMBackend,
        library: OperatorLibrary | None = None,
        node_timeout_s: float = 120.0,
        max_calls: int = 64,
        max_tokens: int = 200_000,
        sandbox_timeout_s: float = 5.0,
        sandbox_memory_mb: int = 512,
        programmer_retries: int = 2,
        temperature: float | None = None,
        max_tokens_per_call: int | None = None,
        max_output_chars: int = 4000,
        cache: bool = True,
        cache_size: int = 4096,
    ) -> None:
        if not callable(getattr(backend, "complete", None)):
            raise TypeError(f"backend must have an async complete(), got {type(backend).__name__}")
        for name, value in (("node_timeout_s", node_timeout_s), ("max_calls", max_calls)):
            if value <= 0:
                raise ValueError(f"{name} must be > 0, got {value}")
        if max_tokens <= 0 or max_output_chars < 100:
            raise ValueError("max_tokens must be > 0 and max_output_chars >= 100")
        self.backend = backend
        self.library = library if library is not None else OperatorLibrary.default()
        self.node_timeout_s = float(node_timeout_s)
        self.max_calls = int(max_calls)
        self.max_tokens = int(max_tokens)
        self.max_output_chars = int(max_output_chars)
        self.settings = OperatorSettings(
            sandbox_timeout_s=sandbox_timeout_s,
            sandbox_memory_mb=sandbox_memory_mb,
            programmer_retries=programmer_retries,
            temperature=temperature,
            max_tokens=max_tokens_per_call,
        )
        self.caches = ScopedCaches(cache_size) if cache else None
        self._operators: dict[str, Any] = {}

    @property
    def cache_stats(self) -> CacheStats:
        """Hits, misses, stores and size of the prefix caches (all zero when they are off)."""
        return self.caches.stats if self.caches is not None else CacheStats()

    # ------------------------------------------------------------------ the run
    async def execute(
        self, graph: WorkflowGraph, task: Task, scope: ExecutionScope | None = None
    ) -> ExecutionResult:
        """Run `graph` on `task`; every failure is reported in the result, never raised.

        Args:
            graph: The workflow (not mutated).
            task: The task.
            scope: The episode this execution belongs to; its prefix cache is reused across
                the episode's executions. ``None``: nothing is cached or reused.

        Raises:
            TypeError: Only for arguments of the wrong type (a caller bug, not a run failure).
        """
        if not isinstance(graph, WorkflowGraph):
            raise TypeError(f"graph must be a WorkflowGraph, got {type(graph).__name__}")
        if not isinstance(task, Task):
            raise TypeError(f"task must be a Task, got {type(task).__name__}")
        start = time.monotonic()
        run = _Run(_Meter(self.backend, self.max_calls, self.max_tokens))
        state = WorkflowState(task)
        cache = self.caches.for_scope(scope) if self.caches is not None else None
        try:
            state = await self._run_sequence(graph, task, state, run, cache)
        except Exception as exc:  # a bug here must still end as a result, not a crash
            run.errors.append(f"{type(exc).__name__}: executor failure: {exc}")
        return ExecutionResult(
            answer=state.candidate,
            node_outputs=run.outputs,
            trace=run.trace,
            errors=run.errors,
            calls=run.meter.calls,
            tokens=run.meter.tokens,
            cached_calls=run.meter.cached_calls,
            seconds=time.monotonic() - start,
        )

    async def _run_sequence(
        self,
        graph: WorkflowGraph,
        task: Task,
        state: WorkflowState,
        run: _Run,
        cache: PrefixCache | None,
    ) -> WorkflowState:
        key = PrefixCache.key("", self._root_identity(task))
        use_cache = cache is not None
        for step in graph.top_level():
            kids = graph.children(step.id) if step.is_structure else []
            key = PrefixCache.key(key, self._step_identity(step, kids))
            if run.meter.exhausted:
                run.errors.append(f"{run.meter.why()}; skipped {step.id} and everything after")
                break
            if use_cache and cache is not None:
                hit = cache.get(key)
                if hit is not None:
                    state, records, outputs, calls, tokens = hit
                    run.meter.charge(calls, tokens)
                    run.trace.extend(records)
                    run.outputs.update(outputs)
                    continue
                use_cache = False  # see prefix_cache: never reuse past the first miss
            marks = len(run.trace), len(run.errors), run.meter.calls, run.meter.tokens
            state = await self._run_step(step, kids, state, run)
            if cache is not None and len(run.errors) == marks[1]:
                records = tuple(run.trace[marks[0] :])
                outputs = {r.node_id: run.outputs[r.node_id] for r in records}
                cost = run.meter.calls - marks[2], run.meter.tokens - marks[3]
                cache.put(key, (state, records, outputs, *cost))
        return state

    async def _run_step(
        self, step: Node, kids: list[Node], state: WorkflowState, run: _Run
    ) -> WorkflowState:
        if not step.is_structure:
            return state.apply(await self._run_node(step, state, run))
        if step.name == "parallel":
            mark = len(run.trace)
            outs = await asyncio.gather(*(self._run_node(k, state, run) for k in kids))
            order = {k.id: i for i, k in enumerate(kids)}  # the trace lists children in order
            run.trace[mark:] = sorted(run.trace[mark:], key=lambda r: order.get(r.node_id, 0))
            return state.after_parallel(outs)
        if step.name == "conditional":
            if not kids:
                return state
            verdict = await self._run_node(kids[0], state, run)
            state = state.apply(verdict)
            branch = kids[2] if verdict.passed and len(kids) > 2 else None
            if not verdict.passed and len(kids) > 1:
                branch = kids[1]
            if branch is not None:
                state = state.apply(await self._run_node(branch, state, run))
            return state
        if step.name == "loop":
            count = step.count or 1
            for iteration in range(count):
                for position, kid in enumerate(kids):
                    out = await self._run_node(kid, state, run, iteration)
                    state = state.apply(out)
                    if out.passed and self._is_checker(kid.name):
                        return state
                    if run.meter.exhausted:
                        if position < len(kids) - 1 or iteration < count - 1:
                            run.errors.append(
                                f"{run.meter.why()}; skipped the rest of loop {step.id}"
                            )
                        return state
            return state
        run.errors.append(f"ValueError: unknown structure {step.name!r} [{step.id}]")
        return state

    async def _run_node(
        self, node: Node, state: WorkflowState, run: _Run, iteration: int = 0
    ) -> OperatorOutput:
        start = time.monotonic()
        try:
            operator, prompt = self._operator(node)
            out = await asyncio.wait_for(
                operator.run(state, prompt, run.meter), timeout=self.node_timeout_s
            )
            if not isinstance(out, OperatorOutput):
                out = OperatorOutput(
                    error=f"TypeError: {node.name} returned {type(out).__name__}, "
                    "not an OperatorOutput"
                )
        except asyncio.TimeoutError:
            out = OperatorOutput(
                error=f"TimeoutError: {node.name} did not finish within {self.node_timeout_s:g} s"
            )
        except Exception as exc:
            out = OperatorOutput(error=f"{type(exc).__name__}: {exc}")
        if out.error and run.meter.refused and BUDGET_ERROR not in out.error:
            out = dataclasses.replace(out, error=f"{run.meter.why()} ({out.error})")
        text = out.text if out.text else (out.error or "")
        text = text[: self.max_output_chars]
        run.outputs[node.id] = text
        run.trace.append(
            NodeRecord(
                node_id=node.id,
                operator=node.name,
                output=text,
                passed=out.passed,
                error=out.error,
                seconds=time.monotonic() - start,
                iteration=iteration,
            )
        )
        if out.error:
            run.errors.append(f"{out.error} [{node.id} {node.name}]")
        return out

    # ------------------------------------------------------------------ helpers
    def _operator(self, node: Node) -> tuple[Any, str]:
        """The implementation and resolved prompt of `node` (raises for unknown operators)."""
        spec = self.library.get(node.name)
        operator = self._operators.get(spec.name)
        if operator is None:
            operator = build_operator(spec, self.settings)
            self._operators[spec.name] = operator
        return operator, node.prompt or spec.default_prompt

    def _is_checker(self, name: str) -> bool:
        spec = self.library.find(name)
        return spec is not None and spec.is_checker

    def _root_identity(self, task: Task) -> list[Any]:
        fields = (task.kind, task.question, task.context, task.public_tests, task.entry_point)
        return [task.id, task.source, *fields, dataclasses.asdict(self.settings)]

    def _step_identity(self, step: Node, kids: list[Node]) -> list[Any]:
        def op(node: Node) -> list[Any]:
            spec = self.library.find(node.name)
            default = spec.default_prompt if spec is not None else ""
            impl = spec.impl if spec is not None else None
            return [node.id, node.name, node.prompt or default, impl]

        if not step.is_structure:
            return op(step)
        return [step.id, step.name, step.count, [op(k) for k in kids]]


__all__ = ["WorkflowExecutor"]
