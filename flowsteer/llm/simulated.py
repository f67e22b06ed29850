"""`SimulatedBackend`: a simulator, not a model, that answers operator calls right or wrong at
known rates, so that a workflow's expected accuracy follows from its structure.

Why: with a tiny backend model every answer is wrong, so CPU runs cannot show what the paper
is about (checkers and conditional revision paying off, shortcut workflows not). This backend
knows each task's gold answer and answers every operator call in the form that operator's parser
reads, right or wrong with a probability set by the operator's role (its library category):

==============  ==========================================================================
role            reply
==============  ==========================================================================
solving         right with ``p_solve`` (Custom, AnswerGenerate, Programmer: the real sandbox
                runs Programmer's program); each call is a fresh draw, whatever it is shown
verification    on a wrong candidate FAIL with ``q_detect``; on a right one PASS, or FAIL
                with ``false_alarm`` (Review, Verify; Test only on math/qa: on code Test runs
                the real public tests and never calls the backend)
revision        a wrong candidate under failed checker feedback is fixed with ``r_fix``;
                otherwise the candidate comes back unchanged (a right one is never broken,
                a wrong one without a detected error stays wrong); no candidate: a solver
ensemble        the plurality of the candidates it is shown (by `vote_key`), ties broken
                uniformly at random (ScEnsemble calls only on a tie, Aggregate on any list)
formatting      the candidate in final form, unchanged (Format)
planning        a generic numbered plan (Plan, Decompose); it changes no probability
==============  ==========================================================================

``per_operator`` overrides the rate of single operators (``{Programmer: 0.9}`` sets
Programmer's p). docs/design.md ("Simulated backend") gives the accuracy of the basic workflow
shapes; tests/llm/test_simulated_backend.py checks them through the real executor and scorer.

How it knows the task and the operator. The backend sees only messages. The operator is read
from the system message every operator sends (`SYSTEM_TEMPLATE`), its role from its category in
the operator library. The task is found by its question: every operator prompt shows it under
``## Problem``, and the backend keeps a registry ``question -> Task`` filled from ``data`` (the
same task files as the datamodule), ``tasks``, or `register` at run time. A prompt about a
question it does not know gets an error value naming the problem, never a made-up answer.
Answers themselves are described in `flowsteer.llm.simulated_answers`.

Reproducibility. Every draw comes from a generator seeded with a hash of (``seed``, task id,
operator, the whole call's messages), so results do not depend on concurrency, call order or
process; identical calls get identical replies, as from a greedy model: two parallel copies of
one operator with one prompt vote once, not twice (vary the prompt or the operator).
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import random
import time
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from flowsteer.llm.backend import (
    BackendStats,
    Completion,
    Message,
    SamplingParams,
    Usage,
    validate_messages,
)
from flowsteer.llm.operator_prompt import OperatorPrompt
from flowsteer.llm.simulated_answers import (
    answer_reply,
    is_right,
    program_reply,
    right_answer,
    wrong_answer,
)
from flowsteer.operators.formatting import stated_answer
from flowsteer.operators.library import OperatorLibrary
from flowsteer.operators.parsing import vote_key
from flowsteer.tasks.loading import read_tasks
from flowsteer.tasks.task import Task

_PLAN = "1. Restate what is asked.\n2. Work out the quantities needed.\n3. Combine them."
_PONG = "pong (SimulatedBackend: a simulator, not a model; it answers operator prompts)"


@dataclass(frozen=True)
class GoldFile:
    """A task file whose gold answers the simulator reads (the fields of the datamodule's
    `TaskFile`, so a YAML anchor of ``data.train`` can be reused).

    Attributes:
        source: The file's schema (``gsm8k``, ``humaneval``, ...).
        path: File, directory or cached hub name.
        split: Split to read from a directory or hub dataset.
        limit: Read at most this many tasks.
    """

    source: str
    path: str
    split: str | None = None
    limit: int | None = None


@functools.cache
def _default_library() -> OperatorLibrary:
    """One parse of the default library for every simulator (libraries are never mutated)."""
    return OperatorLibrary.default()


class _Unanswerable(Exception):
    """A call the simulator cannot answer; its message becomes the error value."""


class SimulatedBackend:
    """A simulated backend LLM with known per-role accuracy (see the module docstring).

    Args:
        p_solve: Probability that a solver call (solving category) answers right.
        q_detect: Probability that a checker call fails a wrong candidate.
        r_fix: Probability that Revise fixes a wrong candidate whose checker failed it.
        false_alarm: Probability that a checker call fails a right candidate.
        seed: Seeds every draw (with the task, the operator and the call's messages).
        data: Task files to read the gold answers from (same fields as the datamodule's).
        tasks: Tasks to know besides `data` (for Python use; `register` adds more later).
        per_operator: Operator name -> its own rate, replacing its role's (p for a solver,
            q for a checker, r for Revise).
        library: Operator library file that maps operator names to categories (``None``: the
            default library); give the one the executor uses.

    Example:
        >>> import asyncio
        >>> from flowsteer.canvas.executor import WorkflowExecutor
        >>> from flowsteer.canvas.graph import WorkflowGraph
        >>> from flowsteer.tasks import Task
        >>> task = Task("t/0", "gsm8k", "math", "How much is 9 times 2?", "18")
        >>> backend = SimulatedBackend(p_solve=1.0, tasks=[task])
        >>> backend
        SimulatedBackend(p_solve=1, q_detect=0.8, r_fix=0.7, false_alarm=0, seed=0)
        >>> graph = WorkflowGraph()
        >>> _ = graph.add_operator("Custom"), graph.add_operator("Format")
        >>> asyncio.run(WorkflowExecutor(backend).execute(graph, task)).answer
        '18'
    """

    is_simulator: ClassVar[bool] = True
    """Marks a simulator for the trainer's logs: its results say nothing about a real model."""

    def __init__(
        self,
        p_solve: float = 0.5,
        q_detect: float = 0.8,
        r_fix: float = 0.7,
        false_alarm: float = 0.0,
        seed: int = 0,
        data: list[GoldFile] | None = None,
        tasks: Sequence[Task] | None = None,
        per_operator: dict[str, float] | None = None,
        library: str | None = None,
    ) -> None:
        rates = {"p_solve": p_solve, "q_detect": q_detect, "r_fix": r_fix}
        rates["false_alarm"] = false_alarm
        rates.update({f"per_operator[{k!r}]": v for k, v in (per_operator or {}).items()})
        for name, value in rates.items():
            if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value <= 1:
                raise ValueError(f"SimulatedBackend: {name} must be in [0, 1], got {value!r}")
        if isinstance(seed, bool) or not isinstance(seed, int):
            raise ValueError(f"SimulatedBackend: seed must be an int, got {seed!r}")
        if library is not None and not Path(library).is_file():
            raise ValueError(f"SimulatedBackend: library file {library!r} does not exist")
        self.library = OperatorLibrary.from_file(library) if library else _default_library()
        self.per_operator: dict[str, float] = {}
        for name, value in (per_operator or {}).items():
            spec = self.library.find(name)
            if spec is None:
                raise ValueError(
                    f"SimulatedBackend: per_operator: {self.library.unknown_message(name)}"
                )
            if spec.category not in ("solving", "verification", "revision"):
                raise ValueError(
                    f"SimulatedBackend: per_operator: {spec.name} ({spec.category}) has no rate; "
                    "only solving, verification and revision operators have one"
                )
            self.per_operator[spec.name] = float(value)
        self.p_solve, self.q_detect, self.r_fix = float(p_solve), float(q_detect), float(r_fix)
        self.false_alarm = float(false_alarm)
        self.seed = seed
        self.data = list(data or [])
        self._by_question: dict[str, list[Task]] = {}
        self._right: dict[str, str | None] = {}
        self._stats = BackendStats()
        self.unmatched = 0
        """Operator calls about a question no registered task has (answered with an error)."""
        for index, file in enumerate(self.data):
            where = file.get("path") if isinstance(file, Mapping) else getattr(file, "path", file)
            try:
                if isinstance(file, Mapping):  # a plain dict from Python code
                    file = GoldFile(**file)
                loaded = read_tasks(file.source, file.path, file.split, file.limit).tasks
            except Exception as exc:
                raise ValueError(f"SimulatedBackend: data[{index}] ({where}): {exc}") from None
            self.register(loaded)
        self.register(tasks or ())

    # ------------------------------------------------------------------ identity
    @property
    def name(self) -> str:
        """``SimulatedBackend(p_solve=..., ...)``: what the run's logs and hparams show."""
        rates = f"p_solve={self.p_solve:g}, q_detect={self.q_detect:g}, r_fix={self.r_fix:g}"
        extra = "".join(f", {k}={v:g}" for k, v in sorted(self.per_operator.items()))
        return (
            f"SimulatedBackend({rates}, false_alarm={self.false_alarm:g}, seed={self.seed}{extra})"
        )

    def __repr__(self) -> str:
        return self.name

    def describe(self) -> dict[str, bool | int | float | str]:
        """Flat scalars for TensorBoard's hparams; ``simulator: True`` says what this is."""
        out: dict[str, bool | int | float | str] = {
            "simulator": True,
            "name": self.name,
            "p_solve": self.p_solve,
            "q_detect": self.q_detect,
            "r_fix": self.r_fix,
            "false_alarm": self.false_alarm,
            "seed": self.seed,
            "tasks": len(self._right),
        }
        out.update({f"per_operator/{k}": v for k, v in sorted(self.per_operator.items())})
        return out

    @property
    def stats(self) -> BackendStats:
        return self._stats

    # ------------------------------------------------------------------ tasks
    def register(self, tasks: Iterable[Task]) -> None:
        """Know `tasks` from now on (a task already known by id is not added twice)."""
        for task in tasks:
            if not isinstance(task, Task):
                raise TypeError(f"SimulatedBackend.register: expected Tasks, got {task!r}")
            if task.id in self._right:
                continue
            self._right[task.id] = right_answer(task)
            self._by_question.setdefault(task.question.strip(), []).append(task)

    @property
    def task_count(self) -> int:
        """How many tasks the simulator knows."""
        return len(self._right)

    def _task(self, prompt: OperatorPrompt) -> Task:
        """The registered task the prompt is about; among tasks that share the question, the
        one whose context the prompt shows (else the first registered)."""
        for problem in prompt.problems():
            found = self._by_question.get(problem)
            if found:
                shown = [t for t in found if t.context and t.context.strip()[:200] in prompt.user]
                return (shown or found)[0]
        head = prompt.user.split("## Problem\n", 1)[-1][:80].replace("\n", " ")
        raise _Unanswerable(
            f"SimulatedBackend: no registered task has the problem of this {prompt.operator} "
            f"call ({head!r}...); it knows {self.task_count} tasks: give it the task files "
            "(data=) or register() them"
        )

    # ------------------------------------------------------------------ the call
    async def complete(self, messages: Sequence[Message], **sampling: Any) -> Completion:
        """Answer an operator call (module docstring); same contract as every `LLMBackend`."""
        start = time.monotonic()
        self._stats = self._stats.plus(calls=1)
        try:
            chat = validate_messages(messages)
            SamplingParams.from_kwargs(sampling)
        except ValueError as exc:
            return self._fail(f"invalid request: {exc}", start, attempts=0)
        await asyncio.sleep(0)  # yield, as a real backend would
        try:
            text = self._reply(chat)
        except _Unanswerable as exc:
            self.unmatched += 1
            return self._fail(str(exc), start)
        except Exception as exc:  # a simulator bug must not break the episode either
            return self._fail(f"SimulatedBackend failed: {type(exc).__name__}: {exc}", start)
        usage = Usage(
            prompt_tokens=sum(len(m["content"].split()) for m in chat),
            completion_tokens=len(text.split()),
        )
        self._stats = self._stats.plus(
            requests=1, prompt_tokens=usage.prompt_tokens, completion_tokens=usage.completion_tokens
        )
        return Completion(
            text=text, usage=usage, finish_reason="stop", latency_s=time.monotonic() - start
        )

    def _fail(self, error: str, start: float, attempts: int = 1) -> Completion:
        self._stats = self._stats.plus(failures=1, requests=attempts)
        return Completion.failure(error, latency_s=time.monotonic() - start, attempts=attempts)

    def _rng(self, task: Task, operator: str, chat: Sequence[Message]) -> random.Random:
        call = "\x1e".join(f"{m['role']}\x1f{m['content']}" for m in chat)
        key = f"{self.seed}\x1d{task.id}\x1d{operator}\x1d{call}".encode()
        return random.Random(int.from_bytes(hashlib.sha256(key).digest()[:8], "big"))

    def _rate(self, operator: str, default: float) -> float:
        return self.per_operator.get(operator, default)

    def _reply(self, chat: Sequence[Message]) -> str:
        prompt = OperatorPrompt.read(chat)
        if prompt.operator is None:
            return _PONG
        spec = self.library.find(prompt.operator)
        if spec is None:
            raise _Unanswerable(
                f"SimulatedBackend: operator {prompt.operator!r} is not in its library; "
                "give it the executor's library file (library=)"
            )
        name, task = spec.name, self._task(prompt)
        rng = self._rng(task, name, chat)
        if spec.category == "solving":
            answer = self._solve(task, rng, self._rate(name, self.p_solve))
            return (
                program_reply(task, answer) if name == "Programmer" else answer_reply(task, answer)
            )
        if spec.category == "verification":
            return self._check(task, prompt, rng, self._rate(name, self.q_detect))
        if spec.category == "revision":
            return answer_reply(task, self._revise(task, prompt, rng, self._rate(name, self.r_fix)))
        if spec.category == "ensemble":
            return self._vote(task, prompt, rng)
        if spec.category == "formatting":
            return self._format(task, prompt)
        return _PLAN

    # ------------------------------------------------------------------ roles
    def _solve(self, task: Task, rng: random.Random, p: float) -> str:
        right = self._right.get(task.id)
        if rng.random() < p and right is not None:
            return right
        return wrong_answer(task, rng)

    def _check(self, task: Task, prompt: OperatorPrompt, rng: random.Random, q: float) -> str:
        candidate = prompt.candidate
        right = candidate is not None and is_right(task, candidate)
        fails = rng.random() < (self.false_alarm if right else q)
        if fails:
            return (
                "Re-deriving the answer gives a different result.\n"
                "<verdict>FAIL</verdict> The final answer does not hold up; redo the computation."
            )
        return "Re-deriving the answer gives the same result.\n<verdict>PASS</verdict>"

    def _revise(self, task: Task, prompt: OperatorPrompt, rng: random.Random, r: float) -> str:
        candidate = prompt.candidate
        if candidate is None:
            return self._solve(task, rng, self._rate("Revise", self.p_solve))
        if is_right(task, candidate) or prompt.feedback_verdict != "failed":
            return candidate
        right = self._right.get(task.id)
        return right if rng.random() < r and right is not None else candidate

    def _vote(self, task: Task, prompt: OperatorPrompt, rng: random.Random) -> str:
        items = prompt.candidates or [c for c in [prompt.candidate] if c is not None]
        if not items:
            return "<choice>A</choice>"
        keys = [vote_key(c, task) for c in items]
        counts = Counter(keys)
        top = max(counts.values())
        tied = [k for k in dict.fromkeys(keys) if counts[k] == top]  # first-appearance order
        index = keys.index(rng.choice(tied))
        return f"<choice>{chr(65 + index)}</choice>\n{answer_reply(task, items[index])}"

    def _format(self, task: Task, prompt: OperatorPrompt) -> str:
        candidate = prompt.candidate or ""
        if task.kind == "code":
            return answer_reply(task, candidate)
        stated = stated_answer(candidate, task) if task.kind == "math" else None
        return f"<answer>{stated or candidate.strip()}</answer>"


__all__ = ["GoldFile", "SimulatedBackend"]
