"""`Progress`: tasks done, accuracy so far and an ETA, on one line.

On a terminal the line is redrawn in place; elsewhere (a log file, CI) a plain line is printed
every ``every`` episodes and at the end, so logs stay readable.
"""

from __future__ import annotations

import sys
import time
from typing import TextIO


class Progress:
    """Counts finished episodes of one system.

    Args:
        label: What is being evaluated (``policy``, ``direct``, ...).
        total: Episodes to play (already stored ones excluded).
        stream: Where to write (default: stderr).
        every: On a non-terminal, print a line every this many episodes.
    """

    def __init__(
        self, label: str, total: int, stream: TextIO | None = None, every: int = 10
    ) -> None:
        self.label = label
        self.total = total
        self.stream = stream if stream is not None else sys.stderr
        self.every = max(1, every)
        self.done = 0
        self.score_sum = 0.0
        self.scored = 0
        self.started = time.monotonic()
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)())

    def line(self) -> str:
        acc = f"{self.score_sum / self.scored:.3f}" if self.scored else "-"
        elapsed = time.monotonic() - self.started
        left = self.total - self.done
        eta = f"{elapsed / self.done * left:.0f}s" if self.done else "?"
        return f"eval {self.label}: {self.done}/{self.total} done, accuracy {acc}, ETA {eta}"

    def update(self, score: float | None) -> None:
        """One more episode finished (``score``: its headline score; None: skipped)."""
        self.done += 1
        if score is not None:
            self.score_sum += score
            self.scored += 1
        if self.tty:
            self.stream.write("\r" + self.line())
            self.stream.flush()
        elif self.done % self.every == 0 or self.done == self.total:
            print(self.line(), file=self.stream, flush=True)

    def close(self) -> None:
        if self.tty and self.total:
            self.stream.write("\n")
            self.stream.flush()


__all__ = ["Progress"]
