"""Robust readers of backend output: answers, verdicts, choices, final forms.

Backend models do not follow output formats reliably, so every operator asks for a tag
(``<answer>…</answer>``, ``<verdict>PASS</verdict>``) and every reader falls back, in a fixed
order, to what models write instead (``Final answer: 18``, a fenced program); verdicts are read by
`flowsteer.operators.verdict`. The fallbacks reuse the answer extraction of the reward scorers
(`flowsteer.rewards`), so what the workflow calls its answer is what the reward would read.
"""

from __future__ import annotations

import re

from flowsteer.operators.verdict import parse_verdict
from flowsteer.rewards.code_answer import strip_code_fences
from flowsteer.rewards.math_answer import (
    extract_final_answer,
    normalize_math_answer,
    numeric_value,
)
from flowsteer.rewards.qa_answer import normalize_answer
from flowsteer.tasks.task import Task

_TAG_CACHE: dict[str, re.Pattern[str]] = {}
_CHOICE_RE = re.compile(r"(?<![A-Za-z])\(?([A-Z])\)?(?![A-Za-z])")
_QA_PREFIX_RE = re.compile(r"^\s*(?:\**\s*)?(?:final\s+)?answer\s*(?:is)?\s*[:：]?\s*\**\s*", re.I)


def tagged(text: str, tag: str) -> str | None:
    """The content of the last ``<tag>…</tag>`` (case-insensitive); an unclosed last tag
    runs to the end of the text. ``None`` when the tag is absent.

    Example:
        >>> tagged("<answer> 18 </answer>", "answer")
        '18'
        >>> tagged("x <ANSWER>42", "answer")
        '42'
    """
    pattern = _TAG_CACHE.get(tag)
    if pattern is None:
        pattern = re.compile(rf"<\s*{tag}\s*>(.*?)(?:<\s*/\s*{tag}\s*>|\Z)", re.I | re.S)
        _TAG_CACHE[tag] = pattern
    matches = pattern.findall(text)
    if not matches:
        return None
    return matches[-1].strip()


def parse_answer(text: str, task: Task) -> str:
    """The answer in a solver's output, in the form the task kind expects.

    An ``<answer>`` tag wins. Otherwise: code tasks take the program (fences stripped, the
    block that defines the entry point preferred); math takes the final answer the reward
    scorer would read; qa takes an ``Answer:`` line, else the last non-empty line.

    Example:
        >>> from flowsteer.tasks import Task
        >>> t = Task("t", "gsm8k", "math", "q", "18")
        >>> parse_answer("9 eggs * $2 = $18.\\nFinal answer: 18", t)
        '18'
    """
    tag = tagged(text, "answer")
    if task.kind == "code":
        body = tag if tag else text
        return strip_code_fences(body, task.entry_point).strip("\n")
    if tag:
        return tag
    if task.kind == "math":
        found = extract_final_answer(text)
        return found.strip() if found else text.strip()
    lines = [line for line in text.strip().splitlines() if line.strip()]
    for line in reversed(lines):
        if _QA_PREFIX_RE.match(line) and _QA_PREFIX_RE.sub("", line).strip():
            return _QA_PREFIX_RE.sub("", line).strip().strip("*").strip()
    return lines[-1].strip() if lines else ""


def vote_key(answer: str, task: Task) -> str:
    """A normal form under which equal answers compare equal, for self-consistency votes.

    Example:
        >>> from flowsteer.tasks import Task
        >>> t = Task("t", "gsm8k", "math", "q", "18")
        >>> vote_key("$18.00", t) == vote_key("18", t)
        True
        >>> vote_key("Fraction(1, 2)", t) == vote_key("\\\\frac{1}{2}", t) == vote_key("0.5", t)
        True
    """
    if task.kind == "math":
        found = extract_final_answer(answer) or answer
        norm, _ = normalize_math_answer(found)
        value = numeric_value(norm.replace(",", ""))
        if value is None:
            return re.sub(r"\s+", "", norm)
        return f"{float(value):.6g}"
    if task.kind == "qa":
        return normalize_answer(answer)
    code = strip_code_fences(answer, task.entry_point)
    lines = [line.rstrip() for line in code.splitlines() if line.strip()]
    return "\n".join(line for line in lines if not line.lstrip().startswith("#"))


def parse_choice(text: str, n: int) -> int | None:
    """A chosen candidate index from ``<choice>B</choice>``, ``(B)`` or a lone letter.

    Example:
        >>> parse_choice("The most consistent is <choice>B</choice>.", 3)
        1
        >>> parse_choice("I pick (C) because ...", 3)
        2
        >>> parse_choice("**B**", 3)
        1
        >>> parse_choice("none", 2) is None
        True
    """
    tag = tagged(text, "choice")
    lone = text.strip().strip("*.():").strip()
    if len(lone) == 1 and lone.isalpha() and 0 <= ord(lone.upper()) - 65 < n:
        return ord(lone.upper()) - 65
    for source in ([tag] if tag else []) + [text]:
        for match in _CHOICE_RE.finditer(source):
            index = ord(match.group(1)) - 65
            if 0 <= index < n and (source is tag or match.group(0).startswith("(")):
                return index
        if source is tag:
            digit = re.search(r"\d+", source)
            if digit and 1 <= int(digit.group(0)) <= n:
                return int(digit.group(0)) - 1
    return None


def final_form(text: str, task: Task) -> str | None:
    """The final answer in the task's expected form, or ``None`` if none can be found.

    math: a bare normalised answer (``18``, ``\\frac{1}{2}``); qa: a short span (one line,
    no ``Answer:`` prefix); code: the program, which must define ``task.entry_point``.
    """
    if task.kind == "code":
        code = parse_answer(text, task)
        if task.entry_point and not re.search(
            rf"^\s*def\s+{re.escape(task.entry_point)}\s*\(", code, re.M
        ):
            return None
        return code or None
    raw = parse_answer(text, task)
    if task.kind == "math":
        found = extract_final_answer(raw) or raw
        norm, percent = normalize_math_answer(found)
        return (norm + ("%" if percent else "")) or None
    span = raw.strip().splitlines()[0].strip() if raw.strip() else ""
    return span.strip("*\"' ").rstrip(".") or None


__all__ = ["final_form", "parse_answer", "parse_choice", "parse_verdict", "tagged", "vote_key"]
