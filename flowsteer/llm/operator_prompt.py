"""Reading an operator's prompt back: which operator asks, about which problem, with what material.

The operators build every prompt one way (`flowsteer.operators.base`): the system message is
`SYSTEM_TEMPLATE` with the operator's name, and the user message is the node's instruction,
then Markdown sections (``## Problem``, ``## Candidate answer``, ...) joined by blank lines, then
one closing paragraph that asks for the output form. `OperatorPrompt` inverts that for the
simulated backend, which must tell who asks and about what from the messages alone.
``tests/llm/test_simulated_backend.py`` runs every operator of the default library through it,
so a change of the prompt layout fails there instead of silently confusing the simulator.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

from flowsteer.llm.backend import Message
from flowsteer.operators.base import SYSTEM_TEMPLATE

_BEFORE_NAME, _AFTER_NAME = SYSTEM_TEMPLATE.split("{role}")[0].split("{name}")
_NAME_RE = re.compile(re.escape(_BEFORE_NAME) + r"(\w+)" + re.escape(_AFTER_NAME.rstrip()))

PROBLEM = "## Problem\n"
CANDIDATE = "## Candidate answer\n"
CANDIDATES = "## Candidates (from a parallel block)\n"
FEEDBACK = "## Checker feedback on the candidate answer ("
# Every section title `Operator.material` writes, in its order (the feedback title goes on with
# the verdict in parentheses).
HEADERS = (
    PROBLEM,
    "## Context\n",
    "## Required function\n",
    "## Plan\n",
    CANDIDATE,
    CANDIDATES,
    FEEDBACK,
)
_NEXT_HEADER_RE = re.compile(
    "\n\n(?:" + "|".join(re.escape(h) for h in HEADERS if h != PROBLEM) + ")"
)
_TRUNCATED = "\n[... truncated]"


@dataclass(frozen=True)
class OperatorPrompt:
    """One backend call as an operator made it.

    Attributes:
        operator: The operator's name from the system message, or ``None`` when the call is
            not an operator's (no system message in the operators' form).
        user: The first user message (the operator's prompt; later messages are a retry's
            history).
    """

    operator: str | None
    user: str

    @classmethod
    def read(cls, messages: Sequence[Message]) -> OperatorPrompt:
        """The operator and prompt of a chat (never raises on odd chats: ``operator=None``)."""
        system = next((m["content"] for m in messages if m["role"] == "system"), "")
        user = next((m["content"] for m in messages if m["role"] == "user"), "")
        match = _NAME_RE.match(system)
        return cls(match.group(1) if match else None, user)

    def problems(self) -> Iterator[str]:
        """Candidate problem texts: after each ``## Problem`` title, the text up to each
        blank line in turn, longest first (a question may hold blank lines itself)."""
        start = self.user.find(PROBLEM)
        while start >= 0:
            rest = self.user[start + len(PROBLEM) :]
            ends = [m.start() for m in re.finditer("\n\n", rest)] + [len(rest)]
            for end in reversed(ends):
                yield rest[:end]
            start = self.user.find(PROBLEM, start + 1)

    def section(self, title: str) -> str | None:
        """The body of section `title` (one of `HEADERS`), or ``None`` when absent.

        It ends at the next section title, or for the last section before the closing
        paragraph (the output-form instruction, one paragraph) at the last blank line.
        """
        start = self.user.find("\n\n" + title)
        if start < 0:
            return None
        body_start = start + 2 + len(title)
        if title == FEEDBACK:  # "(failed)\n..." : skip the verdict to the body
            newline = self.user.find("\n", body_start)
            body_start = len(self.user) if newline < 0 else newline + 1
        after = self.user[body_start:]
        nxt = _NEXT_HEADER_RE.search(after)
        end = nxt.start() if nxt else after.rfind("\n\n")
        body = after if end < 0 else after[:end]
        return body[: -len(_TRUNCATED)] if body.endswith(_TRUNCATED) else body

    @property
    def candidate(self) -> str | None:
        """The current candidate the prompt shows, or ``None``."""
        return self.section(CANDIDATE)

    @property
    def candidates(self) -> list[str]:
        """The candidate list of a parallel block, in order (``[]``: none shown)."""
        body = self.section(CANDIDATES)
        if body is None:
            return []
        items: list[str] = []
        if not body.startswith("(A) "):
            return items
        position = len("(A) ")
        while True:
            marker = f"\n({chr(66 + len(items))}) "
            nxt = body.find(marker, position)
            if nxt < 0:
                items.append(body[position:])
                return items
            items.append(body[position:nxt])
            position = nxt + len(marker)

    @property
    def feedback_verdict(self) -> str | None:
        """The verdict the checker feedback section states (``"passed"``, ``"failed"``, ``"no
        verdict"``), or ``None`` when the prompt shows no feedback."""
        start = self.user.find("\n\n" + FEEDBACK)
        if start < 0:
            return None
        rest = self.user[start + 2 + len(FEEDBACK) :]
        return rest.split(")", 1)[0]


__all__ = ["CANDIDATE", "CANDIDATES", "FEEDBACK", "HEADERS", "PROBLEM", "OperatorPrompt"]
