"""Formatting: `FormatOperator` turns the candidate into the task's final-answer form.

math: a bare number or expression (``18``, ``\\frac{1}{2}``); qa: a short span; code: a
complete program that defines ``task.entry_point``.

Format must never make a candidate worse than its input, so the reply is used only when it
states a usable answer, and otherwise the candidate is kept (its own final form when it has
one, else the candidate unchanged):

* math: the reply must *state* an answer (a non-empty ``<answer>`` tag, a ``\\boxed{}``, a
  final-answer line, or a bare one-line answer; never a number guessed out of chatter), and the
  answer must be free of words once normalised; when the candidate itself states an answer with
  a value (a digit or a LaTeX command in it), the reply must be equivalent to it under the math
  scorer's rules (``0.5`` for ``1/2``, ``0.33`` for ``1/3`` rounded; not ``19`` for ``18``,
  ``x`` for ``18``, nor ``1.41`` for ``\\sqrt{2}``): Format writes the answer in form, it does
  not solve again;
* qa: a non-empty ``<answer>`` tag, or a reply that is one short line (not a lead-in such as
  "Here is the answer:"), and a span taken from the candidate (sharing a word with it; an
  abstention such as "unanswerable" only where the candidate abstained too), so "I don't know"
  or a different name never replaces a candidate's answer;
* code: the reply's program must parse, define the entry point, and define every top-level
  name (function, class, import, constant) the candidate defined: a model asked to "format"
  code sometimes returns only part of it, dropping a helper the entry point calls; nor may
  it turn a function the candidate implemented into a stub (``pass``, ``...``, a docstring,
  ``raise NotImplementedError``: "rest unchanged"), or the whole program into one, nor change
  a function's parameters (names, defaults, ``*args``/``**kwargs``; annotations may change).

A failed call keeps the candidate too (with the error recorded).
"""

from __future__ import annotations

import ast
import re
from typing import TYPE_CHECKING

from flowsteer.operators.base import Operator, OperatorOutput, WorkflowState, backend_error
from flowsteer.operators.parsing import final_form, parse_answer, tagged
from flowsteer.rewards.code_answer import build_candidate_program
from flowsteer.rewards.math_answer import (
    MathAnswerScorer,
    extract_final_answer,
    is_bare_answer,
    normalize_math_answer,
)
from flowsteer.rewards.qa_answer import DEFAULT_NO_ANSWER_PHRASES, normalize_answer

if TYPE_CHECKING:
    from flowsteer.llm.backend import LLMBackend
    from flowsteer.tasks.task import Task

_FORMS = {
    "math": "Reply with only the final answer (a number or expression) inside <answer></answer>.",
    "qa": "Reply with only the shortest exact answer span inside <answer></answer>.",
    "code": (
        "Reply with only the complete Python program that defines `{entry}` (with its "
        "imports) in one ```python block."
    ),
    # APPS standard-input programs and DS-1000 gap code: the question says what code it is.
    "code/no_entry": "Reply with only the Python code the problem asks for in one ```python block.",
}
_MAX_QA_WORDS = 12
_NO_ANSWER = frozenset(normalize_answer(p) for p in DEFAULT_NO_ANSWER_PHRASES)
_FUNCTION_WORDS = frozenset({  # words that say nothing about which answer it is
    "i", "you", "he", "she", "it", "we", "they", "is", "was", "are", "were", "be", "been", "do",
    "does", "did", "of", "in", "on", "at", "to", "for", "by", "with", "and", "or", "but", "that",
    "this", "think", "know", "dont",
})  # fmt: skip
_ABSTAINING_WORDS = frozenset(
    {"no", "not", "none", "cannot", "unknown", "unanswerable", "doesnt", "isnt", "nowhere"}
)
_HAS_VALUE_RE = re.compile(r"\d|\\[A-Za-z]")  # a digit or a LaTeX command: the answer has a value
_KEPT = "(the Format reply had no usable answer; the candidate is kept)"


def defined_names(program: str) -> set[str] | None:
    """The top-level names a program binds (defs, classes, imports, assignments); ``None``
    when it does not parse."""
    try:
        tree = ast.parse(program)
    except (SyntaxError, ValueError):
        return None
    names: set[str] = set()
    for node in tree.body:
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            names.add(node.name)
        elif isinstance(node, ast.Import | ast.ImportFrom):
            names.update((a.asname or a.name).split(".")[0] for a in node.names)
        elif isinstance(node, ast.Assign | ast.AnnAssign | ast.AugAssign):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            for target in targets:
                names.update(n.id for n in ast.walk(target) if isinstance(n, ast.Name))
    return names


def _is_stub(body: list[ast.stmt]) -> bool:
    """Whether a block does nothing: only ``pass``, ``...``, strings, ``raise NotImplementedError``."""
    for node in body:
        if isinstance(node, ast.Pass):
            continue
        if isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant):
            continue
        if isinstance(node, ast.Raise) and "NotImplementedError" in ast.unparse(node):
            continue
        return False
    return True


def stubbed_names(program: str) -> set[str] | None:
    """The top-level functions (and class methods, as ``Class.name``) whose last definition
    is a stub, plus ``"<module>"`` when the whole program is one; ``None`` when it does not
    parse."""
    try:
        tree = ast.parse(program)
    except (SyntaxError, ValueError):
        return None
    stubs = {"<module>"} if _is_stub(tree.body) else set()
    functions = ast.FunctionDef | ast.AsyncFunctionDef
    defs = [(node.name, node) for node in tree.body if isinstance(node, functions)]
    for cls in tree.body:
        if isinstance(cls, ast.ClassDef):
            defs += [(f"{cls.name}.{n.name}", n) for n in cls.body if isinstance(n, functions)]
    for name, node in defs:  # the last definition of a name is the one that counts
        (stubs.add if _is_stub(node.body) else stubs.discard)(name)
    return stubs


def signatures(program: str) -> dict[str, tuple[object, ...]]:
    """The parameters of each top-level function (last definition wins), without annotations:
    positional names, defaults count, ``*args``, keyword-only names, ``**kwargs``."""
    try:
        tree = ast.parse(program)
    except (SyntaxError, ValueError):
        return {}
    out: dict[str, tuple[object, ...]] = {}
    for node in tree.body:
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            a = node.args
            out[node.name] = (
                tuple(x.arg for x in [*a.posonlyargs, *a.args]),
                len(a.defaults),
                a.vararg is not None,
                tuple(x.arg for x in a.kwonlyargs),
                a.kwarg is not None,
            )
    return out


def stated_answer(text: str, task: Task) -> str | None:
    """The answer `text` states in the task's final form, or ``None`` (see the module
    docstring); for code, only that the program defines the entry point is checked here."""
    if task.kind == "code":
        return final_form(text, task)
    tag = tagged(text, "answer")
    if task.kind == "math":
        found = extract_final_answer(tag if tag else text, last_number=False)
        if not found:
            return None
        norm, percent = normalize_math_answer(found)
        if not norm or not is_bare_answer(norm):
            return None
        return norm + ("%" if percent else "")
    if tag is not None:
        return final_form(text, task) if tag else None
    lines = [line for line in text.strip().splitlines() if line.strip()]
    if len(lines) != 1 or lines[0].rstrip().endswith(":"):
        return None
    if len(lines[0].split()) > _MAX_QA_WORDS:
        return None
    return final_form(text, task)


def _qa_keeps(answer: str, candidate: str) -> bool:
    """A qa span is extracted from the candidate: it shares a word with it, or it abstains
    ("unanswerable") where the candidate did too ("the passage does not say")."""
    said = set(normalize_answer(candidate).split())
    span = normalize_answer(answer)
    if (set(span.split()) - _FUNCTION_WORDS) & said:
        return True
    return span in _NO_ANSWER and bool(said & _ABSTAINING_WORDS)


class FormatOperator(Operator):
    """Extracts the final answer in the expected form (see the module docstring)."""

    name = "Format"
    role = "You extract the final answer in exactly the required form."
    reads = ("candidate",)

    async def run(self, state: WorkflowState, prompt: str, llm: LLMBackend) -> OperatorOutput:
        task = state.task
        candidate = state.candidate
        if not candidate:
            return OperatorOutput(error="NoCandidate: Format has no candidate answer to format")
        kind = task.kind if task.kind != "code" or task.entry_point else "code/no_entry"
        form = _FORMS[kind].format(entry=task.entry_point)
        user = f"{prompt}\n\n{self.material(state)}\n\n{form}"
        reply = await self.ask(llm, user)
        if reply.ok:
            answer = stated_answer(reply.text, task)
            if answer is not None and self._keeps(answer, candidate, task):
                return OperatorOutput(text=answer, answer=answer)
        kept = self._kept(candidate, task)
        error = None if reply.ok else backend_error(reply)
        text = kept if error else f"{_KEPT}\n{kept}"
        return OperatorOutput(text=text, answer=kept, error=error)

    @staticmethod
    def _keeps(answer: str, candidate: str, task: Task) -> bool:
        """Whether a formatted answer keeps what the candidate had: for math, the value the
        candidate stated; for code, every definition and every implemented body."""
        if task.kind == "math":
            own = stated_answer(candidate, task)
            if own is None or not _HAS_VALUE_RE.search(own):  # nothing stated, or a bare "x"
                return True
            return MathAnswerScorer().equivalent(own, answer)
        if task.kind == "qa":
            return _qa_keeps(answer, candidate)
        if task.kind != "code":
            return True
        after_program = build_candidate_program(task, answer)
        after = defined_names(after_program)
        if after is None:
            return False
        before_program = build_candidate_program(task, parse_answer(candidate, task))
        before = defined_names(before_program)
        if before is None:
            return True
        stubs_before = stubbed_names(before_program) or set()
        stubs_after = stubbed_names(after_program) or set()
        new_stubs = {name.split(".")[0] for name in stubs_after - stubs_before}
        if not before <= after or new_stubs & (before | {"<module>"}):
            return False
        params_before, params_after = signatures(before_program), signatures(after_program)
        return all(params_after.get(n, p) == p for n, p in params_before.items())

    @staticmethod
    def _kept(candidate: str, task: Task) -> str:
        """The candidate in its own final form when it has one, else unchanged."""
        own = stated_answer(candidate, task)
        if own is None and task.kind == "code":
            own = final_form(build_candidate_program(task, candidate), task)
        if own is None and task.kind == "math":
            found = extract_final_answer(candidate)
            own = normalize_math_answer(found)[0] if found else None
        return own or candidate


__all__ = ["FormatOperator", "defined_names", "signatures", "stated_answer", "stubbed_names"]
