"""Synthetic expert episodes for the supervised warm start (docs/design.md §5, `flowsteer sft`).

An untrained small policy writes almost no valid action, so RL has nothing to reinforce. The
warm start imitates *expert* episodes: valid multi-turn conversations that build a workflow
meeting the finish constraints and then finish. They are generated, not collected:

* `ExpertPlanner` draws a workflow from the operator library by category (so a user's library
  works unchanged) in one of four shapes (``chain``, ``parallel``, ``conditional``, ``loop``),
  then writes the turns that build it: ``add`` (sometimes after a short templated thought), the
  node prompts the canvas asks for (``set_prompt``, templated per operator category and task
  kind, sometimes empty to keep the default), and ``finish``.
* `play_expert` plays those turns through the REAL canvas inside a `RolloutEpisode`, as if an
  engine had sampled them: each turn's ids are the tokenised text plus the end-of-turn id, so
  the sequence, the observations (what the canvas really answered, executed by whatever
  executor is given) and the loss mask (1 on the policy's turns, 0 elsewhere) are built by the
  same code as an RL episode. An expert turn the canvas rejects, or an episode that does not end
  with an accepted ``finish``, is an error: the data must be valid by construction.

Nothing here is random without the planner's seed, so a seed fixes the data set.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from flowsteer.actions import DONE, Action, format_action
from flowsteer.canvas.canvas import Canvas
from flowsteer.canvas.execution import Executor
from flowsteer.canvas.finish import FinishConstraints
from flowsteer.operators.library import OperatorLibrary
from flowsteer.rewards.workflow_reward import WorkflowReward
from flowsteer.rollout.chat import ChatFormat
from flowsteer.rollout.engine import Generation
from flowsteer.rollout.episode import RolloutEpisode
from flowsteer.rollout.trajectory import Trajectory
from flowsteer.tasks import Task

Shape = Literal["chain", "parallel", "conditional", "loop"]
SHAPES: tuple[str, ...] = ("chain", "parallel", "conditional", "loop")
_ATTEMPTS = 64  # draws tried before a too-small turn budget is reported

# Node prompts per operator category; solving and formatting also per task kind.
_PROMPTS: dict[str, tuple[str, ...]] = {
    "planning": (
        "List the quantities, the unknown and the steps.",
        "Outline the steps needed to solve the problem.",
        "Break the problem into short sub-questions.",
    ),
    "solving/math": (
        "Solve step by step and state the final number.",
        "Write Python that computes the answer and prints it.",
        "Compute the answer carefully.",
    ),
    "solving/code": (
        "Write the Python function the task asks for.",
        "Implement the function and handle edge cases.",
        "Write a correct and simple solution in Python.",
    ),
    "solving/qa": (
        "Answer the question from the context.",
        "Find the answer step by step.",
        "Give a short answer to the question.",
    ),
    "verification": (
        "Check the answer independently. Say pass or fail.",
        "Review the candidate for errors.",
        "Recompute the answer and compare.",
    ),
    "revision": (
        "Fix the answer using the feedback.",
        "Revise the candidate to fix the errors found.",
    ),
    "ensemble": (
        "Pick the answer most candidates agree on.",
        "Combine the candidates into one answer.",
    ),
    "formatting/math": ("Return only the final number.", "Give only the final answer."),
    "formatting/code": ("Return only the function.", "Return only the final code."),
    "formatting/qa": ("Return only the short answer.", "Give only the final answer."),
}
_THOUGHTS: dict[str, str] = {
    "planning": "Start with a plan.",
    "solving": "Add a solver.",
    "verification": "Add a checker.",
    "revision": "Revise on feedback.",
    "ensemble": "Choose among the candidates.",
    "formatting": "Format the answer.",
    "parallel": "Two solvers in parallel.",
    "conditional": "Check, and revise on fail.",
    "loop": "Check and revise in a loop.",
    "finish": "The workflow is complete.",
}


@dataclass(frozen=True)
class ExpertScript:
    """One expert episode before it is played.

    Attributes:
        task: The task the workflow is built for.
        shape: The workflow's shape (``chain``, ``parallel``, ``conditional``, ``loop``).
        turns: The policy's messages, in order; the last one is ``finish``.
    """

    task: Task
    shape: str
    turns: tuple[str, ...]


class ExpertPlanner:
    """Draws valid workflows from a library and writes the turns that build them.

    Args:
        library: The operators and structures the expert may use (the policy's library).
        finish_constraints: What ``finish`` requires; every workflow meets it.
        max_turns: The canvas's turn limit; every script finishes within it.
        shapes: Shapes to draw from (those the constraints allow are kept).
        think_rate: Share of add and finish turns that start with a short thought.
        default_prompt_rate: Share of prompts left empty (the operator's default prompt).
        seed: Seeds every draw.

    Raises:
        ValueError: One line, when no shape can meet the finish constraints with this library
            (no checker, no formatter, no structure, no solver) or within ``max_turns``.
    """

    def __init__(
        self,
        library: OperatorLibrary,
        finish_constraints: FinishConstraints,
        *,
        max_turns: int = 20,
        shapes: Sequence[str] = SHAPES,
        think_rate: float = 0.3,
        default_prompt_rate: float = 0.2,
        seed: int = 0,
    ) -> None:
        unknown = [s for s in shapes if s not in SHAPES]
        if unknown or not shapes:
            raise ValueError(f"expert shapes must be some of {', '.join(SHAPES)}, got {shapes}")
        for name, rate in (
            ("think_rate", think_rate),
            ("default_prompt_rate", default_prompt_rate),
        ):
            if not 0.0 <= rate <= 1.0:
                raise ValueError(f"{name} must be in [0, 1], got {rate}")
        self.library = library
        self.constraints = finish_constraints
        self.max_turns = max_turns
        self.think_rate = think_rate
        self.default_prompt_rate = default_prompt_rate
        self.rng = random.Random(seed)
        self.ops = {
            cat: [s.name for s in library if s.category == cat]
            for cat in ("planning", "solving", "verification", "revision", "ensemble", "formatting")
        }
        self.shapes = self._usable(list(shapes))
        self._check_turn_budget()

    # ------------------------------------------------------------------ checks
    def _usable(self, shapes: list[str]) -> list[str]:
        """The shapes this library can build under the constraints; else a one-line error."""
        ops, c = self.ops, self.constraints
        missing = []
        if not ops["solving"]:
            missing.append("solving operator (every expert workflow has a solver)")
        if c.require_checker and not ops["verification"]:
            missing.append("verification operator (require_checker)")
        if c.require_format and not ops["formatting"]:
            missing.append("formatting operator (require_format)")
        if missing:
            raise ValueError(
                f"the operator library cannot meet the finish constraints: it has no "
                f"{' and no '.join(missing)}; operators are {', '.join(self.library.names)}"
            )
        keep = []
        for shape in shapes:
            if shape == "chain" and c.require_structure:
                continue
            if shape != "chain" and self.library.structure(shape) is None:
                continue
            if shape in ("conditional", "loop") and not ops["verification"]:
                continue
            keep.append(shape)
        if not keep:
            raise ValueError(
                f"no expert shape among {', '.join(shapes)} can meet the finish constraints "
                f"({c.describe()}) with structures "
                f"{', '.join(s.name for s in self.library.structures) or 'none'} and operators "
                f"{', '.join(self.library.names)}"
            )
        return keep

    def _check_turn_budget(self) -> None:
        """Keep the shapes whose shortest workflow fits in ``max_turns``; none: an error."""
        state = self.rng.getstate()
        fewest = {shape: _turns(self._steps(shape, lean=True)) for shape in self.shapes}
        self.rng.setstate(state)  # the check must not shift the data set
        self.shapes = [shape for shape in self.shapes if fewest[shape] <= self.max_turns]
        if not self.shapes:
            raise ValueError(
                f"max_turns={self.max_turns} is too few: the shortest expert workflow meeting "
                f"the finish constraints ({self.constraints.describe()}) takes "
                f"{min(fewest.values())} turns"
            )

    # ------------------------------------------------------------------ drawing
    def script(self, task: Task) -> ExpertScript:
        """The next expert episode for ``task`` (shape, workflow and wording drawn)."""
        shape = self.rng.choice(self.shapes)
        for attempt in range(_ATTEMPTS):
            steps = self._steps(shape, lean=attempt == _ATTEMPTS - 1)
            if _turns(steps) <= self.max_turns:
                break
        turns = []
        for step in steps:
            turns.append(self._add_turn(step))
            turns.extend(self._prompt_turn(name, task) for name in _operators(step))
        turns.append(self._say(Action("finish"), "finish"))
        return ExpertScript(task, shape, tuple(turns))

    def _steps(self, shape: str, *, lean: bool = False) -> list[Action]:
        """The workflow as the add actions that build it, in order.

        ``lean`` leaves out every optional step (the shortest workflow of the shape)."""
        ops, rng, c = self.ops, self.rng, self.constraints

        def maybe(p: float) -> bool:
            return not lean and rng.random() < p

        def op(category: str) -> Action:
            return Action("add", operator=rng.choice(ops[category]))

        steps: list[Action] = []
        if ops["planning"] and maybe(0.4):
            steps.append(op("planning"))
        after_fix = ops["revision"] or ops["solving"]  # what runs on a checker's fail
        if shape == "chain":
            steps.append(op("solving"))
        elif shape == "parallel":
            width = 2 if lean or len(ops["solving"]) < 3 else rng.choice((2, 3))
            pool = list(ops["solving"])
            children = rng.sample(pool, width) if len(pool) >= width else pool * width
            steps.append(Action("add", structure="parallel", operators=tuple(children[:width])))
            if ops["ensemble"]:
                steps.append(op("ensemble"))
        elif shape == "conditional":
            steps.append(op("solving"))
            on_pass = DONE
            if ops["formatting"] and maybe(0.3):
                on_pass = rng.choice(ops["formatting"])
            steps.append(
                Action(
                    "add",
                    structure="conditional",
                    condition=rng.choice(ops["verification"]),
                    on_fail=rng.choice(after_fix),
                    on_pass=on_pass,
                )
            )
        else:  # loop
            steps.append(op("solving"))
            body = (rng.choice(ops["verification"]), rng.choice(after_fix))
            steps.append(Action("add", structure="loop", operators=body, count=rng.choice((2, 3))))
        has = self._categories(steps)
        if ops["verification"] and "verification" not in has and (c.require_checker or maybe(0.5)):
            steps.append(op("verification"))
        need_format = (
            bool(ops["formatting"]) and "formatting" not in has and (c.require_format or maybe(0.7))
        )
        while _count(steps) + need_format < c.min_operators:
            steps = self._pad(steps, op)
        if need_format:
            steps.append(op("formatting"))
        return steps

    def _pad(self, steps: list[Action], op) -> list[Action]:
        """One more operator for ``min_operators``: a plan first, then checker and fix pairs
        (each is valid anywhere in a sequence, and together they read like an expert's)."""
        ops = self.ops
        if ops["planning"] and "planning" not in self._categories(steps):
            return [op("planning"), *steps]
        last = steps[-1]
        last_category = self.library.get(last.operator).category if last.operator else None
        if last_category != "verification" and ops["verification"]:
            return [*steps, op("verification")]
        return [*steps, op("revision" if ops["revision"] else "solving")]

    def _categories(self, steps: Sequence[Action]) -> set[str]:
        return {self.library.get(n).category for s in steps for n in _operators(s)}

    # ------------------------------------------------------------------ wording
    def _say(self, action: Action, topic: str) -> str:
        if self.rng.random() < self.think_rate:
            action = Action(**{**_fields(action), "think": _THOUGHTS[topic]})
        return format_action(action)

    def _add_turn(self, step: Action) -> str:
        topic = step.structure or self.library.get(step.operator or "").category
        return self._say(step, topic)

    def _prompt_turn(self, name: str, task: Task) -> str:
        category = self.library.get(name).category
        if self.rng.random() < self.default_prompt_rate:
            text = ""
        else:
            key = f"{category}/{task.kind}" if f"{category}/{task.kind}" in _PROMPTS else category
            text = self.rng.choice(_PROMPTS.get(key, _PROMPTS["solving/math"]))
        return format_action(Action("set_prompt", prompt=text))


def _fields(action: Action) -> dict:
    return {name: getattr(action, name) for name in Action.__slots__}


def _operators(step: Action) -> list[str]:
    """The operator nodes an add creates, in the order the canvas asks for their prompts."""
    if step.structure is None:
        return [step.operator or ""]
    if step.structure == "conditional":
        names = [step.condition or "", step.on_fail or ""]
        if step.on_pass is not None and step.on_pass.lower() != DONE:
            names.append(step.on_pass)
        return names
    return list(step.operators)


def _count(steps: Sequence[Action]) -> int:
    """Operator nodes of ``steps``."""
    return sum(len(_operators(s)) for s in steps)


def _turns(steps: Sequence[Action]) -> int:
    """Turns an episode building ``steps`` takes: one add and one prompt per operator, finish."""
    return sum(1 + len(_operators(s)) for s in steps) + 1


class ExpertPlayError(ValueError):
    """An expert episode the canvas did not accept turn by turn (a generator bug or a setting
    that leaves no room, such as a context too short for the episode)."""


async def play_expert(
    script: ExpertScript,
    chat: ChatFormat,
    *,
    executor: Executor | None = None,
    library: OperatorLibrary | None = None,
    finish_constraints: FinishConstraints | None = None,
    max_turns: int = 20,
    max_context_tokens: int = 16384,
    max_new_tokens: int = 1024,
    group_id: int = 0,
) -> Trajectory:
    """Play ``script`` through a real canvas as an RL episode and return its trajectory.

    Each turn goes to `RolloutEpisode.play` as the `Generation` an engine would return for it
    (the text's ids plus the end-of-turn id, log-probs 0), so masks and observations are exactly
    those of RL. The reward is structure only (R_ans is not scored: no sandbox runs); its ``div``
    component is 1 for a workflow that meets the paper's constraints.

    Raises:
        ExpertPlayError: A turn is longer than ``max_new_tokens``, the canvas rejects a turn,
            the context runs out, or the episode does not end with an accepted ``finish``.
    """
    canvas = Canvas(
        script.task,
        executor=executor,
        library=library,
        max_turns=max_turns,
        finish_constraints=finish_constraints,
    )
    episode = RolloutEpisode(
        canvas, chat, group_id=group_id, max_context_tokens=max_context_tokens, min_turn_tokens=1
    )
    where = f"expert episode for task {script.task.id!r} ({script.shape})"
    for k, text in enumerate(script.turns, start=1):
        if episode.done:
            why = "the context is full" if episode.context_truncated else "the canvas ended it"
            raise ExpertPlayError(
                f"{where} stopped before turn {k} ({why}); raise max_context_tokens or max_turns"
            )
        ids = [*chat.encode(text), chat.end_of_turn_id]
        if len(ids) > max_new_tokens:
            raise ExpertPlayError(
                f"{where}: turn {k} takes {len(ids)} tokens, more than max_new_tokens="
                f"{max_new_tokens}; raise max_new_tokens"
            )
        before = episode.invalid_actions
        await episode.play(Generation(ids, [0.0] * len(ids), "stop"))
        if episode.invalid_actions != before:
            raise ExpertPlayError(f"{where}: the canvas rejected turn {k}: {text!r}")
    if not episode.finished:
        raise ExpertPlayError(f"{where} did not end with an accepted finish")
    return await episode.score(_STRUCTURE_ONLY, 0)


async def expert_trajectories(
    tasks: Sequence[Task],
    chat: ChatFormat,
    planner: ExpertPlanner,
    num_episodes: int,
    *,
    executor: Executor | None = None,
    max_context_tokens: int = 16384,
    max_new_tokens: int = 1024,
) -> list[Trajectory]:
    """``num_episodes`` expert episodes over ``tasks`` (cycled in a seeded order), played.

    The canvas gets the planner's library, finish constraints and turn limit, so the scripts
    and the canvas that checks them cannot disagree.

    Raises:
        ValueError: No task, or ``num_episodes`` below 1 (an empty expert set).
        ExpertPlayError: An episode the canvas did not accept (see `play_expert`).
    """
    if num_episodes < 1:
        raise ValueError(
            f"num_episodes must be at least 1, got {num_episodes} (an empty expert set)"
        )
    if not tasks:
        raise ValueError("the expert set needs at least one task")
    order = list(tasks)
    planner.rng.shuffle(order)
    scripts = [planner.script(order[i % len(order)]) for i in range(num_episodes)]
    return [
        await play_expert(
            script,
            chat,
            executor=executor,
            library=planner.library,
            finish_constraints=planner.constraints,
            max_turns=planner.max_turns,
            max_context_tokens=max_context_tokens,
            max_new_tokens=max_new_tokens,
            group_id=i,
        )
        for i, script in enumerate(scripts)
    ]


def _no_answer(task: Task, prediction: str | None) -> float:
    """R_ans is not scored for expert data (it would run the sandbox on code tasks)."""
    return 0.0


_STRUCTURE_ONLY = WorkflowReward(mode="ungated", answer_scorer=_no_answer)


__all__ = [
    "SHAPES",
    "ExpertPlanner",
    "ExpertPlayError",
    "ExpertScript",
    "expert_trajectories",
    "play_expert",
]
