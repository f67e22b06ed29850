"""What the simulated backend answers for a task, right or wrong, and how it judges a candidate.

* A **right** answer is the task's gold: the final answer for math, the first gold span for qa
  (``unanswerable`` for an unanswerable SQuAD v2 question), the reference program for code
  (HumanEval: the prompt plus its canonical completion). A code task without a reference
  solution has no right answer, so the simulator can never solve it.
* A **wrong** answer is drawn fresh for every call, so two wrong answers practically never
  agree (a vote cannot be won by wrong answers; a loop never sees the same wrong candidate
  twice): math, the gold plus a random non-zero offset (a random integer when the gold is not
  a number); qa, an invented name and a number, sharing no word with any gold; code, the
  reference program whose entry function returns a random constant (a stub when there is no
  reference), judged by the real sandbox like any program.
* A candidate is **right** when the answer scorer gives it full credit (math, qa), or, for
  code, when its entry function (its whole program, for tasks without an entry point) is the
  reference's, as Python's AST sees it; no sandbox run is needed to judge it.
"""

from __future__ import annotations

import ast
import random
import re

from flowsteer.operators.parsing import vote_key
from flowsteer.rewards.answer import score_answer
from flowsteer.rewards.code_answer import strip_code_fences
from flowsteer.rewards.qa_answer import normalize_answer
from flowsteer.tasks.task import Task

_NAMES = (
    "Aldemar", "Brinvale", "Corvessa", "Dunmere", "Elsworth", "Farrowby", "Galvenor", "Hestwick",
    "Islinde", "Jorvath", "Kestrel Moor", "Lindqvist", "Marrowgate", "Norwenna", "Ostrava Vey",
    "Pellucid", "Quenby", "Rostane", "Sevrin", "Talwyn",
)  # fmt: skip
_INT_RE = re.compile(r"-?\d+")


def right_answer(task: Task) -> str | None:
    """The answer a right call gives (module docstring); ``None`` when there is none."""
    if task.kind == "qa":
        return task.answer if normalize_answer(task.answer) else "unanswerable"
    if task.kind == "math":
        return task.answer
    solution = task.answer.strip("\n")
    if not solution.strip():
        return None
    entry = task.entry_point
    if entry and f"def {entry}(" in task.question and f"def {entry}(" not in solution:
        return task.question.rstrip("\n") + "\n" + task.answer.rstrip("\n")  # a completion
    return solution


def wrong_answer(task: Task, rng: random.Random) -> str:
    """A fresh wrong answer for `task` (module docstring)."""
    if task.kind == "code":
        return _wrong_program(task, rng.randint(1000, 999_999))
    for _ in range(20):  # a draw that happens to be right is drawn again
        if task.kind == "math":
            key = vote_key(task.answer, task)
            wrong = str(rng.randint(10**6, 10**7))
            if _INT_RE.fullmatch(key):
                wrong = str(int(key) + rng.choice((-1, 1)) * rng.randint(1, 999_999))
        else:
            wrong = f"{rng.choice(_NAMES)} {rng.randint(10, 9999)}"
        if score_answer(task, wrong) == 0.0:
            return wrong
    return wrong


def _wrong_program(task: Task, constant: int) -> str:
    entry = task.entry_point
    if entry is None:  # APPS standard input, DS-1000 gap code
        return f"result = {constant}" if task.source == "ds1000" else f"print({constant})"
    program = right_answer(task)
    if program is None and f"def {entry}(" in task.question:
        program = task.question
    try:
        tree = ast.parse(program or "")
    except SyntaxError:
        tree = ast.Module(body=[], type_ignores=[])
    defs = [n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name == entry]
    if not defs:
        return f"def {entry}(*args, **kwargs):\n    return {constant}\n"
    defs[-1].body = [ast.Return(ast.Constant(constant))]
    return ast.unparse(tree) + "\n"


def is_right(task: Task, candidate: str) -> bool:
    """Whether `candidate` is a right answer (module docstring)."""
    if task.kind != "code":
        return score_answer(task, candidate) >= 1.0 - 1e-9
    right = right_answer(task)
    return right is not None and _fingerprint(task, candidate) == _fingerprint(task, right)


def _fingerprint(task: Task, program: str) -> str | None:
    code = strip_code_fences(program, task.entry_point)
    try:
        tree = ast.parse(code)
    except (SyntaxError, ValueError):
        return None
    if task.entry_point is None:
        return ast.dump(tree)
    defs = [n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name == task.entry_point]
    return ast.dump(defs[-1]) if defs else None


def answer_reply(task: Task, answer: str) -> str:
    """`answer` as a solver writes it: a program in a fence (code), else in an answer tag."""
    if task.kind == "code":
        return f"```python\n{answer.strip(chr(10))}\n```"
    return f"Working through the problem step by step.\n<answer>{answer}</answer>"


def program_reply(task: Task, answer: str) -> str:
    """`answer` as Programmer writes it: the program (code), else ``solve()`` returning it."""
    if task.kind == "code":
        return answer_reply(task, answer)
    return f"```python\ndef solve():\n    return {answer!r}\n```"


__all__ = ["answer_reply", "is_right", "program_reply", "right_answer", "wrong_answer"]
