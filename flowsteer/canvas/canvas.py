"""The canvas state machine: the environment the Flow-Director acts in (text in, text out).

    canvas = Canvas(task, executor=my_executor)        # library: the default twelve operators
    observation = canvas.reset()                       # the first user turn
    result = await canvas.step(policy_text)            # StepResult(observation, done, info)

States:

* ``building``: any action. ``add`` and ``modify`` that create operator nodes move to
  ``awaiting_prompt``; ``delete``, ``set_prompt`` (with a ``<target>``) and count-only modifies
  complete at once; ``finish`` checks the `FinishConstraints` and moves to ``done``.
* ``awaiting_prompt``: the canvas waits for one prompt per new operator node, in order
  (``<action>set_prompt</action><prompt>…</prompt>``; empty keeps the default). A reply with
  no action tag (plain text, or a bare ``<prompt>…</prompt>``) *is* the prompt, thinking
  removed: the paper's two-step add. An empty reply is rejected (it is not a prompt; an empty
  ``<prompt></prompt>`` keeps the default). ``delete`` is also accepted (to back out of an
  add); any other action is rejected with a message saying which prompt is awaited and how to
  send it, so the state is never a trap.
* ``done``: after an accepted ``finish`` or when ``max_turns`` turns were used (then
  ``info.truncated`` is True). Further steps are answered, never raised, and change nothing.

Every policy message is a turn, accepted or not. An edit is applied to a copy of the graph and
the copy is validated against the library; only a clean copy replaces the graph, so a rejected
action leaves the graph exactly as it was (ids included). When an edit completes (the state is
back to ``building``) the current workflow is executed and the result goes into the feedback;
while prompts are awaited nothing runs, so a structure is not executed with half its prompts.
``finish`` does not run the workflow again: the last run already reflects it (`last_result`).

The reward scores `final_result()`: the output of the final graph itself, executed at episode
end when the last run was of an older graph (see that method for the decisions).

Size. A workflow holds at most ``max_nodes`` nodes (structures and their operators all count)
and a structure at most ``max_children`` operators; an edit past either is rejected with a
message naming the limit. With the feedback's cuts this keeps every observation bounded,
whatever the policy writes.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

from flowsteer.actions import DONE, Action, ParseError, parse_action
from flowsteer.canvas.execution import ExecutionResult, ExecutionScope, Executor, accepts_scope
from flowsteer.canvas.feedback import FeedbackRenderer, Status
from flowsteer.canvas.finish import FinishConstraints
from flowsteer.canvas.graph import GraphEditError, WorkflowGraph
from flowsteer.operators.library import OperatorLibrary

if TYPE_CHECKING:
    from flowsteer.tasks import Task

CanvasState = Literal["building", "awaiting_prompt", "done"]
BUILDING: CanvasState = "building"
AWAITING_PROMPT: CanvasState = "awaiting_prompt"
DONE_STATE: CanvasState = "done"


@dataclass(frozen=True, slots=True)
class StepInfo:
    """What happened in one step, for logging and rewards.

    Attributes:
        action_type: The parsed action type, or ``None`` when no action could be read.
        valid: Whether the action was accepted.
        error: The rejection or parse message, ``None`` when accepted.
        error_code: A stable code for the error (parse codes, ``"wrong_state"``,
            ``"invalid_edit"``, ``"unknown_operator"``, ``"finish_constraints"``, ``"over"``,
            ``"too_large"``, ``"too_wide"``).
        turn: Turns used so far, this one included.
        state: The canvas state after the step.
        dsl: The workflow's DSL after the step.
        truncated: The episode ended because `max_turns` was reached.
        executed: The workflow ran in this step.
        awaiting: The node whose prompt is awaited next, if any.
        ignored_actions: Further actions in the message that were not applied.
        result: The execution result of this step, if the workflow ran.
    """

    action_type: str | None
    valid: bool
    error: str | None
    error_code: str | None
    turn: int
    state: CanvasState
    dsl: str
    truncated: bool = False
    executed: bool = False
    awaiting: str | None = None
    ignored_actions: int = 0
    result: ExecutionResult | None = None


@dataclass(frozen=True, slots=True)
class StepResult:
    """The environment's answer to one policy message."""

    observation: str
    done: bool
    info: StepInfo


@dataclass(frozen=True)
class CanvasSnapshot:
    """An opaque saved state of one `Canvas` (see `Canvas.snapshot`)."""

    values: dict


class _Rejected(Exception):
    """Internal: an action the canvas refuses; carries the message and code."""

    def __init__(self, message: str, code: str) -> None:
        super().__init__(message)
        self.message, self.code = message, code


class Canvas:
    """The executable canvas for one task (see the module docstring).

    Args:
        task: The task the workflow is built for.
        executor: Runs the workflow after each completed edit; ``None``: edits are applied
            and checked but nothing runs (structure-only use and tests).
        library: The operators and structures the policy may use; ``None``: the default
            twelve operators.
        max_turns: Policy turns per episode (every message counts, accepted or not).
        finish_constraints: What ``finish`` requires.
        feedback: The o_exec renderer (truncation lengths).
        execution_timeout_s: Wall-clock limit for one execution (``None``: the executor's
            own limits only); a timeout is reported as a ``TimeoutError`` execution error.
        max_nodes: Most nodes a workflow may hold (a structure and each of its operators
            count one each); an edit past it is rejected.
        max_children: Most operators in one structure (a parallel's width, a loop body, ...).
    """

    def __init__(
        self,
        task: Task,
        executor: Executor | None = None,
        library: OperatorLibrary | None = None,
        max_turns: int = 20,
        finish_constraints: FinishConstraints | None = None,
        feedback: FeedbackRenderer | None = None,
        execution_timeout_s: float | None = None,
        max_nodes: int = 40,
        max_children: int = 8,
    ) -> None:
        if max_turns < 1:
            raise ValueError(f"max_turns must be at least 1, got {max_turns}")
        if max_children < 3 or max_nodes < max_children + 1:
            raise ValueError(
                "max_children must be at least 3 (a conditional has 3 operators) and max_nodes "
                f"above it; got max_children={max_children}, max_nodes={max_nodes}"
            )
        self.max_nodes = max_nodes
        self.max_children = max_children
        self.task = task
        self.executor = executor
        self.library = library if library is not None else _default_library()
        self.max_turns = max_turns
        self.finish_constraints = finish_constraints or FinishConstraints()
        self.feedback = feedback or FeedbackRenderer()
        self.execution_timeout_s = execution_timeout_s
        self.reset()

    # -------------------------------------------------------------------- state
    def reset(self) -> str:
        """Start a new episode on the same task; returns the first observation."""
        from flowsteer.prompts import user_prompt

        self._graph = WorkflowGraph()
        self._scope = ExecutionScope()  # a fresh episode: the executor's cache starts empty
        self._state: CanvasState = BUILDING
        self._turn = 0
        self._pending: list[str] = []
        self._pending_total = 0
        self.last_result: ExecutionResult | None = None
        self._result_graph: WorkflowGraph | None = None  # the graph `last_result` is of
        self.truncated = False
        self._stats_for: WorkflowGraph | None = None
        self._stats_text = ""
        return user_prompt(self.task, max_turns=self.max_turns)

    _SNAPSHOT_FIELDS = (
        "_graph", "_scope", "_state", "_turn", "_pending", "_pending_total", "last_result",
        "_result_graph", "truncated", "_stats_for", "_stats_text",
    )  # fmt: skip

    def snapshot(self) -> CanvasSnapshot:
        """The exact current state (graph, execution results, turn, pending prompts), for
        `restore`: an interactive session's undo. Cheap: graphs are replaced, never mutated."""
        values = {k: getattr(self, k) for k in self._SNAPSHOT_FIELDS}
        values["_pending"] = list(values["_pending"])
        return CanvasSnapshot(values)

    def restore(self, snapshot: CanvasSnapshot) -> None:
        """Return to a `snapshot` of this canvas: the same graph, results and turn count."""
        for k, v in snapshot.values.items():
            setattr(self, k, list(v) if k == "_pending" else v)

    @property
    def graph(self) -> WorkflowGraph:
        """The current workflow. Replaced (not mutated) by each accepted edit."""
        return self._graph

    @property
    def state(self) -> CanvasState:
        return self._state

    @property
    def turn(self) -> int:
        return self._turn

    @property
    def done(self) -> bool:
        return self._state == DONE_STATE

    @property
    def awaiting(self) -> str | None:
        """The node whose prompt is awaited next."""
        return self._pending[0] if self._pending else None

    def system_prompt(self) -> str:
        """The policy's system prompt for this canvas (library, grammar, constraints)."""
        from flowsteer.prompts import system_prompt

        return system_prompt(
            self.library, max_turns=self.max_turns, finish_constraints=self.finish_constraints
        )

    # --------------------------------------------------------------------- step
    async def step(self, text: object) -> StepResult:
        """Apply one policy message. Never raises on any input.

        `text` is the policy's message; an `Action` or `ParseError` that the caller already got
        from `parse_action` is also accepted, so a rollout that parses for its own logs does not
        parse twice.
        """
        if self._state == DONE_STATE:
            return self._over()
        self._turn += 1
        action = text if isinstance(text, (Action, ParseError)) else parse_action(text)
        awaiting = self._state == AWAITING_PROMPT
        if awaiting and isinstance(action, ParseError) and action.prompt is not None:
            # no action tag: the reply is the awaited prompt
            action = Action("set_prompt", prompt=action.prompt, think=action.think)
        result: ExecutionResult | None = None
        execution: str | None = None
        if isinstance(action, ParseError):
            status: Status = "rejected"
            message, code, action_type = action.message, action.code, action.action_type
            ignored = action.ignored
        else:
            action_type, ignored = action.type, action.ignored
            try:
                message, run = self._apply(action)
                status, code = ("awaiting_prompt" if self._pending else "accepted"), None
                if action_type == "finish":
                    status = "finished"
                if run:
                    result = await self._execute()
                    execution = None if result is not None else self._why_not_run()
            except _Rejected as rej:
                status, message, code = "rejected", rej.message, rej.code
        if ignored:
            message += f" ({ignored} more action(s) in your message were ignored: one per turn)"
        if code is not None:
            execution = "not run (the workflow did not change)"
        elif status == "finished":
            result = self.last_result  # shown again, not re-run (info.executed stays False)
            execution = None if result is not None else self._why_not_run()
        elif self._pending:
            execution = "not run yet (waiting for prompts)"
        truncated = False
        if self._state != DONE_STATE and self._turn >= self.max_turns:
            truncated = self.truncated = True
            self._state = DONE_STATE
            status = "truncated"
            message += f" The turn limit ({self.max_turns}) is reached; the episode is over."
        observation = self.feedback.render(
            status=status,
            message=message,
            graph=self._graph,
            stats=self._stats(),
            turn=self._turn,
            max_turns=self.max_turns,
            execution=execution,
            result=result,
        )
        info = StepInfo(
            action_type=action_type,
            valid=code is None,
            error=None if code is None else message,
            error_code=code,
            turn=self._turn,
            state=self._state,
            dsl=self._graph.to_dsl(),
            truncated=truncated,
            executed=result is not None and status != "finished",
            awaiting=self.awaiting,
            ignored_actions=ignored,
            result=result,
        )
        return StepResult(observation, self._state == DONE_STATE, info)

    async def final_result(self) -> ExecutionResult | None:
        """The execution result the episode's reward scores: the final graph's own output.

        Call it once the episode is over (the director and the rollouts do). When the last
        execution was of another graph (an edit still awaiting prompts at the turn limit,
        everything deleted) the final graph is executed now, so the answer scored is always
        the output of the workflow R_div scores; a repeated call does not run it again.

        * Nodes still awaiting a prompt run with their operator's default prompt: in the graph
          an empty prompt *is* the default (what ``<prompt></prompt>`` sends), so the final
          graph is complete as it stands.
        * An empty graph, or a canvas without an executor, has no answer: ``None``.
        """
        if self.executor is None or not self._graph.sequence:
            return None
        if self._result_graph is not self._graph and self._result_graph != self._graph:
            await self._execute()
        return self.last_result

    def _over(self) -> StepResult:
        msg = "the episode is over; no further actions are applied"
        obs = self.feedback.render(
            status="over",
            message=msg,
            graph=self._graph,
            stats=self._stats(),
            turn=self._turn,
            max_turns=self.max_turns,
        )
        info = StepInfo(
            None, False, msg, "over", self._turn, DONE_STATE, self._graph.to_dsl(), self.truncated
        )
        return StepResult(obs, True, info)

    # ----------------------------------------------------------------- actions
    def _apply(self, action: Action) -> tuple[str, bool]:
        """Apply `action`; returns (message, whether to execute). Raises `_Rejected`."""
        if self._state == AWAITING_PROMPT and action.type not in ("set_prompt", "delete"):
            nid = self._pending[0]
            cancel = self._graph.parent(nid) or nid
            raise _Rejected(
                f"{action.type} is not possible now: the canvas is waiting for the prompt of "
                f"{self._awaiting_what()}. Send the prompt text as your reply (or "
                "<action>set_prompt</action><prompt>…</prompt>; an empty prompt keeps the "
                f"default), or cancel the add with <action>delete</action><target>{cancel}"
                "</target>",
                "wrong_state",
            )
        return self._handlers[action.type](self, action)

    def _do_add(self, a: Action) -> tuple[str, bool]:
        g = self._graph.copy()
        index = None
        if a.position is not None:
            if a.position > len(g.sequence) + 1:
                raise _Rejected(
                    f"position {a.position} is out of range; the workflow has {len(g.sequence)} "
                    f"step(s), so use 1..{len(g.sequence) + 1} (or leave <position> out to append)",
                    "invalid_edit",
                )
            index = a.position - 1
        if a.structure is None:
            nid = g.add_operator(self._op(a.operator), index=index)
            new = [nid]
            what = f"{nid} {g.node(nid).name}"
        else:
            if self.library.structure(a.structure) is None:
                raise _Rejected(
                    f"the {a.structure} structure is not enabled; structures are "
                    f"{', '.join(s.name for s in self.library.structures) or 'none'}",
                    "invalid_edit",
                )
            if a.structure == "conditional":
                names = [self._op(a.condition), self._op(a.on_fail)]
                if a.on_pass is not None and a.on_pass.lower() != DONE:
                    names.append(self._op(a.on_pass))
            else:
                self._check_width(len(a.operators), a.structure)
                names = [self._op(n) for n in a.operators]
            sid = g.add_structure(a.structure, names, count=a.count, index=index)
            new = list(g.node(sid).children)
            what = f"{sid} {a.structure} ({', '.join(f'{c} {g.node(c).name}' for c in new)})"
        self._commit(g, new, new_batch=True)
        step = g.step_index(new[0]) + 1
        note = " (the <prompt> given with add was ignored: prompts come next)" if a.prompt else ""
        return f"Added {what} as step {step}{note}. {self._awaiting_text()}", False

    def _do_delete(self, a: Action) -> tuple[str, bool]:
        nid = self._target(a.target)
        g = self._graph.copy()
        name = g.node(nid).name
        try:
            removed = g.remove(nid)
        except GraphEditError as exc:
            raise _Rejected(str(exc), "invalid_edit") from None
        pending = [p for p in self._pending if p not in removed]
        self._commit(g, pending, new_batch=len(pending) != len(self._pending))
        extra = f" with {', '.join(removed[1:])}" if len(removed) > 1 else ""
        if self._pending:
            return f"Deleted {nid} {name}{extra}. {self._awaiting_text()}", False
        return f"Deleted {nid} {name}{extra}.", True

    def _do_modify(self, a: Action) -> tuple[str, bool]:
        nid = self._target(a.target)
        g = self._graph.copy()
        node = g.node(nid)
        new: list[str] = []
        if node.kind == "operator":
            if a.operator is None:
                raise _Rejected(
                    f"{nid} is an operator ({node.name}); change it with "
                    f"<action>modify</action><target>{nid}</target><operator>Custom</operator>",
                    "invalid_edit",
                )
            g.set_operator(nid, self._op(a.operator))
            new = [nid]
        else:
            if a.operator is not None:
                raise _Rejected(
                    f"{nid} is a {node.name} structure, not an operator; change its operators "
                    f"with <operators>…</operators>"
                    + (", <condition>, <on_fail>, <on_pass>" if node.name == "conditional" else "")
                    + (" or <count>" if node.name == "loop" else ""),
                    "invalid_edit",
                )
            try:
                if a.operators:
                    self._check_width(len(a.operators), node.name)
                    new.extend(g.set_children(nid, [self._op(n) for n in a.operators]))
                for role in ("condition", "on_fail", "on_pass"):
                    value = getattr(a, role)
                    if value is not None:
                        name = None if value.lower() == DONE else self._op(value)
                        created = g.set_branch(nid, role, name)
                        if created is not None:
                            new.append(created)
                if a.count is not None:
                    g.set_count(nid, a.count)
            except GraphEditError as exc:
                raise _Rejected(str(exc), "invalid_edit") from None
        self._commit(g, new, new_batch=True)
        msg = f"Modified {nid}: now {self._step_text(nid)}."
        if new:
            return f"{msg} {self._awaiting_text()}", False
        return msg, True

    def _do_set_prompt(self, a: Action) -> tuple[str, bool]:
        if self._pending:
            nid = self._pending[0]
            if a.target is not None and self._target(a.target) != nid:
                raise _Rejected(
                    f"the canvas is waiting for the prompt of {self._awaiting_what()}; leave "
                    f"<target> out, or use <target>{nid}</target>",
                    "wrong_state",
                )
        elif a.target is None:
            raise _Rejected(
                "no prompt is awaited; to change a node's prompt name it, e.g. "
                "<action>set_prompt</action><target>n2</target><prompt>…</prompt>",
                "missing_field",
            )
        else:
            nid = self._target(a.target)
        g = self._graph.copy()
        try:
            g.set_prompt(nid, a.prompt or "")
        except GraphEditError as exc:
            raise _Rejected(str(exc), "invalid_edit") from None
        what = "default prompt kept" if not a.prompt else "prompt set"
        msg = f"{nid} {g.node(nid).name}: {what}."
        self._commit(g, [p for p in self._pending if p != nid])
        if self._pending:
            return f"{msg} {self._awaiting_text()}", False
        return msg, True

    def _do_finish(self, a: Action) -> tuple[str, bool]:
        missing = self.finish_constraints.violations(self._graph, self.library)
        if missing:
            raise _Rejected(
                "cannot finish yet: the workflow needs " + "; ".join(missing) + ".",
                "finish_constraints",
            )
        self._state = DONE_STATE
        return "Finished: the workflow below is final.", False

    # ----------------------------------------------------------------- helpers
    def _commit(self, graph: WorkflowGraph, pending: list[str], new_batch: bool = False) -> None:
        if len(graph) > self.max_nodes:
            raise _Rejected(
                f"the workflow would have {len(graph)} nodes; at most {self.max_nodes} are "
                "allowed (a structure and each of its operators count one each): delete nodes "
                "before adding more",
                "too_large",
            )
        issues = graph.validate(self.library)
        if issues:
            more = f" (and {len(issues) - 1} more problem(s))" if len(issues) > 1 else ""
            raise _Rejected(issues[0].message + more, issues[0].code)
        self._graph = graph
        if new_batch:
            self._pending_total = len(pending)
        self._pending = pending
        self._state = AWAITING_PROMPT if pending else BUILDING

    def _check_width(self, n: int, structure: str) -> None:
        if n > self.max_children:
            raise _Rejected(
                f"a {structure} may hold at most {self.max_children} operators, got {n}; use fewer",
                "too_wide",
            )

    def _op(self, name: str | None) -> str:
        spec = self.library.find(name or "")
        if spec is None:
            raise _Rejected(self.library.unknown_message(name or ""), "unknown_operator")
        return spec.name

    def _target(self, target: str | None) -> str:
        g = self._graph
        if target in g:
            return target  # type: ignore[return-value]
        t = (target or "").lower()
        hits = [n.id for n in g.walk() if n.name.lower() == t]
        if len(hits) == 1:
            return hits[0]
        if hits:
            raise _Rejected(
                f"{target!r} names {len(hits)} nodes ({', '.join(hits)}); use the node id",
                "invalid_edit",
            )
        raise _Rejected(g._unknown_id_message(target or ""), "invalid_edit")

    def _awaiting_what(self) -> str:
        nid = self._pending[0]
        k = self._pending_total - len(self._pending) + 1
        of = f", {k} of {self._pending_total}" if self._pending_total > 1 else ""
        return f"{nid} ({self._graph.node(nid).name}{of})"

    def _awaiting_text(self) -> str:
        return (
            f"Now send the prompt for {self._awaiting_what()}: reply with its text, or "
            "<action>set_prompt</action><prompt>…</prompt>; an empty prompt keeps the default."
        )

    def _step_text(self, nid: str) -> str:
        node = self._graph.node(nid)
        return node.name if node.kind == "operator" else self._graph._step_dsl(node)

    def _stats(self) -> str:
        """The stats line, cached per graph object (graphs are replaced, never mutated)."""
        if self._stats_for is not self._graph:
            self._stats_text = self._compute_stats()
            self._stats_for = self._graph
        return self._stats_text

    def _compute_stats(self) -> str:
        g, lib = self._graph, self.library
        cats = set()
        n_ops = 0
        for node in g.walk():
            if node.kind == "operator":
                n_ops += 1
                spec = lib.find(node.name)
                if spec is not None:
                    cats.add(spec.category)
        kinds = ", ".join(g.structure_kinds()) or "none"
        return (
            f"operators: {n_ops}; structures: {kinds}; "
            f"checker: {'yes' if 'verification' in cats else 'no'}; "
            f"format: {'yes' if 'formatting' in cats else 'no'}"
        )

    def _why_not_run(self) -> str:
        if self.executor is None:
            return "skipped (no executor)"
        return "not run (the workflow is empty)"

    async def _execute(self) -> ExecutionResult | None:
        if self.executor is None or not self._graph.sequence:
            return None
        try:
            scoped = {"scope": self._scope} if accepts_scope(self.executor) else {}
            run = self.executor.execute(self._graph, self.task, **scoped)
            if self.execution_timeout_s is not None:
                result = await asyncio.wait_for(run, self.execution_timeout_s)
            else:
                result = await run
        except asyncio.TimeoutError:
            result = ExecutionResult(
                errors=[f"TimeoutError: execution exceeded {self.execution_timeout_s:g} s"]
            )
        except Exception as exc:  # a buggy executor must not end the episode
            result = ExecutionResult(errors=[f"{type(exc).__name__}: {exc}"])
        if not isinstance(result, ExecutionResult):
            result = ExecutionResult(
                errors=[
                    f"TypeError: executor returned {type(result).__name__}, not ExecutionResult"
                ]
            )
        self.last_result, self._result_graph = result, self._graph
        return result


Canvas._handlers = {
    "add": Canvas._do_add,
    "delete": Canvas._do_delete,
    "modify": Canvas._do_modify,
    "set_prompt": Canvas._do_set_prompt,
    "finish": Canvas._do_finish,
}

_DEFAULT_LIBRARY: OperatorLibrary | None = None


def _default_library() -> OperatorLibrary:
    """The default library, read once per process (it is immutable)."""
    global _DEFAULT_LIBRARY
    if _DEFAULT_LIBRARY is None:
        _DEFAULT_LIBRARY = OperatorLibrary.default()
    return _DEFAULT_LIBRARY


__all__ = [
    "AWAITING_PROMPT",
    "BUILDING",
    "Canvas",
    "CanvasState",
    "FinishConstraints",
    "StepInfo",
    "StepResult",
]
