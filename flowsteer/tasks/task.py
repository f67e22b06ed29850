"""The unit of work: one question the Flow-Director builds a workflow for.

Every dataset loader produces `Task`s, and everything downstream (canvas, operators, rewards)
reads only this type, so adding a dataset never touches the environment.

A `Task` checks its own fields when it is built: a missing (``None``) or ill-typed field raises
`TaskFieldError` naming the field, whatever parser built it. This matters because ``datasets``
fills every record with every column (absent ones as ``None``), so a parser's ``"q" in record``
test never fires; `load_tasks` turns the error into one naming file, record and field.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from typing import Any, Literal

TaskKind = Literal["math", "qa", "code"]
TASK_KINDS: tuple[str, ...] = ("math", "qa", "code")


class TaskFieldError(ValueError):
    """A `Task` field that is missing or of the wrong type; `field` names it."""

    def __init__(self, task_id: object, field: str, problem: str) -> None:
        super().__init__(f"Task {task_id!r}: field {field!r}: {problem}")
        self.field = field
        self.problem = problem


@dataclass(frozen=True)
class Task:
    """One question with everything needed to answer and score it.

    Attributes:
        id: Unique within its source, e.g. ``"gsm8k/test/17"`` or ``"HumanEval/0"``.
        source: The dataset it came from (``gsm8k``, ``math``, ``hotpotqa``, ``squad_v2``,
            ``mbpp``, ``humaneval``; for evaluation ``triviaqa``, ``nq_open``, ``math_qa``,
            ``aime``, ``apps``, ``ds1000``; or a user's own name).
        kind: Which answer scorer applies: ``math``, ``qa`` or ``code``.
        question: What the policy and the operators read. For HumanEval, the function
            signature and docstring; for MBPP, the statement plus one example assert.
        answer: The canonical gold: a final answer for math, the first gold span for qa
            (``""`` for an unanswerable SQuAD v2 question), the reference solution for code
            (``""`` when the dataset has none).
        alternatives: Further accepted golds (qa: every gold span; scorers take the max).
        context: Supporting text the question refers to (qa paragraphs), else ``""``.
        tests: Hidden tests that score a code answer, each a self-contained Python snippet
            run after the candidate program (and ``setup_code``); for ``apps`` one JSON case
            ``{"input", "output"}`` each, for ``ds1000`` the problem's harness program (their
            own scorers read them). Never shown to the policy.
        public_tests: Tests a Test operator may run during the episode: asserts; for
            ``apps`` the cases the statement shows, as JSON like ``tests``; for ``ds1000`` one
            program that runs the candidate in its context and reports errors only.
        setup_code: Code run before the candidate's tests (MBPP ``test_setup_code``).
        entry_point: Name of the function a code answer must define.
        meta: Anything else from the record, kept for analysis (never used for scoring).
    """

    id: str
    source: str
    kind: TaskKind
    question: str
    answer: str
    alternatives: tuple[str, ...] = ()
    context: str = ""
    tests: tuple[str, ...] = ()
    public_tests: tuple[str, ...] = ()
    setup_code: str = ""
    entry_point: str | None = None
    meta: dict[str, Any] = field(default_factory=dict, compare=False, hash=False)

    def __post_init__(self) -> None:
        for name in ("id", "source", "question"):  # required and never blank
            value = getattr(self, name)
            self._check_str(name, value)
            if not value.strip():
                raise TaskFieldError(self.id, name, "empty")
        self._check_str("answer", self.answer)  # "" is a valid gold (unanswerable SQuAD v2)
        if self.kind not in TASK_KINDS:
            raise TaskFieldError(
                self.id, "kind", f"kind must be one of {TASK_KINDS}, got {self.kind!r}"
            )
        for name in ("context", "setup_code"):
            self._check_str(name, getattr(self, name))
        if self.entry_point is not None:
            self._check_str("entry_point", self.entry_point)
            if not self.entry_point.strip():
                raise TaskFieldError(self.id, "entry_point", "empty (use None for no function)")
        for name in ("alternatives", "tests", "public_tests"):
            value = getattr(self, name)
            if isinstance(value, str) or not isinstance(value, tuple | list):
                raise TaskFieldError(
                    self.id, name, f"expected a tuple of strings, got {type(value).__name__}"
                )
            for i, item in enumerate(value):
                if not isinstance(item, str):
                    raise TaskFieldError(
                        self.id, f"{name}[{i}]", f"expected a string, got {type(item).__name__}"
                    )
            object.__setattr__(self, name, tuple(value))
        if not isinstance(self.meta, dict):
            raise TaskFieldError(
                self.id, "meta", f"expected a dict, got {type(self.meta).__name__}"
            )

    def _check_str(self, name: str, value: object) -> None:
        if value is None:
            raise TaskFieldError(self.id, name, "missing (None)")
        if not isinstance(value, str):
            raise TaskFieldError(self.id, name, f"expected a string, got {type(value).__name__}")

    @property
    def golds(self) -> tuple[str, ...]:
        """Every accepted gold answer, the canonical one first, without duplicates."""
        return tuple(dict.fromkeys((self.answer, *self.alternatives)))

    def to_dict(self) -> dict[str, Any]:
        """A JSON-serialisable form (tuples become lists)."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Task:
        """Inverse of `to_dict`; a missing, unknown or ill-typed field is a `TaskFieldError`."""
        if not isinstance(data, dict):
            raise TaskFieldError(None, "<task>", f"expected a dict, got {type(data).__name__}")
        names = [f.name for f in fields(cls)]
        task_id = data.get("id")
        unknown = sorted(set(data) - set(names), key=str)
        if unknown:
            raise TaskFieldError(task_id, str(unknown[0]), f"unknown field (fields: {names})")
        for name in ("id", "source", "kind", "question", "answer"):
            if name not in data:
                raise TaskFieldError(task_id, name, "missing")
        # lists (JSON has no tuples) become tuples; anything else is left for the checks
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in data.items()})
