"""o_exec: the structured text block the canvas returns after every turn.

Layout (one ``key: value`` line each, always in this order, lines without content omitted)::

    [canvas] status: accepted
    message: Prompt of n3 (Programmer) set. The workflow ran.
    workflow: Plan -> Programmer
    nodes: 1. n1 Plan | 2. n2 Programmer
    stats: operators: 2; structures: none; checker: no; format: no
    execution: ok (3 calls, 912 tokens)
    answer: 42
    checks: n5 Verify fail: the units are wrong
    errors: NameError: name 'sympy' is not defined
    suggestion: ...
    turn: 3/20

It is a pure function of the canvas state and the step's outcome (no timings, no addresses),
so the same state always gives the same text; golden-file tests pin it. Long outputs are cut
to a configurable length with a marker saying how much was cut. Every line is bounded (the
message, the answer, each check and error, and how many of them are listed), and the canvas
bounds the workflow's size, so an observation stays bounded whatever the policy writes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:
    from flowsteer.canvas.execution import ExecutionResult
    from flowsteer.canvas.graph import WorkflowGraph

Status = Literal["accepted", "rejected", "awaiting_prompt", "finished", "truncated", "over"]


@dataclass(frozen=True)
class FeedbackRenderer:
    """Renders o_exec.

    Args:
        max_answer_chars: The answer is cut to this many characters.
        max_error_chars: Each error and check message is cut to this many characters.
        max_errors: At most this many errors are listed.
        long_answer_chars: An answer longer than this gets the too-long suggestion.
        max_checks: At most this many checker verdicts are listed (a loop repeats them).
        max_message_chars: The message line is cut to this many characters.
    """

    max_answer_chars: int = 400
    max_error_chars: int = 300
    max_errors: int = 3
    long_answer_chars: int = 1000
    max_checks: int = 6
    max_message_chars: int = 1200

    def render(
        self,
        *,
        status: Status,
        message: str,
        graph: WorkflowGraph,
        stats: str,
        turn: int,
        max_turns: int,
        execution: str | None = None,
        result: ExecutionResult | None = None,
    ) -> str:
        """The o_exec block. `execution` is the execution line when nothing ran (why not);
        `result` the execution result when the workflow ran this turn."""
        lines = [
            f"[canvas] status: {status}",
            f"message: {_cut(message, self.max_message_chars)}",
            f"workflow: {graph.to_dsl()}",
            f"nodes: {graph.describe_nodes()}",
            f"stats: {stats}",
        ]
        if result is not None:
            lines.extend(self._result_lines(result))
        elif execution is not None:
            lines.append(f"execution: {execution}")
        lines.append(f"turn: {turn}/{max_turns}")
        return "\n".join(lines)

    def _result_lines(self, result: ExecutionResult) -> list[str]:
        state = "ok" if result.ok else "error"
        lines = [f"execution: {state} ({result.calls} calls, {result.tokens} tokens)"]
        answer = result.answer
        if answer is not None and answer.strip():
            lines.append(f"answer: {_cut(answer.strip(), self.max_answer_chars)}")
        else:
            lines.append("answer: (none)")
        all_checks = [r for r in result.trace if r.passed is not None]
        checks = all_checks[-self.max_checks :]  # the latest verdicts matter most
        if checks:
            skipped = len(all_checks) - len(checks)
            lines.append(
                "checks: "
                + (f"({skipped} earlier not shown) " if skipped else "")
                + " | ".join(
                    f"{r.node_id} {r.operator} {'pass' if r.passed else 'fail'}"
                    + (
                        f": {_cut(r.output.strip(), self.max_error_chars)}"
                        if r.output.strip()
                        else ""
                    )
                    for r in checks
                )
            )
        if result.errors:
            shown = [
                _cut(e.strip(), self.max_error_chars) for e in result.errors[: self.max_errors]
            ]
            more = len(result.errors) - len(shown)
            lines.append("errors: " + " | ".join(shown) + (f" (+{more} more)" if more else ""))
        lines.extend(f"suggestion: {s}" for s in self.suggestions(result))
        return lines

    def suggestions(self, result: ExecutionResult) -> list[str]:
        """Repair suggestions for the recognisable failures of `result`, in a fixed order."""
        out = []
        text = "\n".join(result.errors)
        if "SyntaxError" in text:
            out.append(
                "the generated code has a syntax error: ask for one complete, runnable program "
                "in the Programmer's prompt (set_prompt), or check it with Test ? Revise : done"
            )
        if "NameError" in text:
            out.append(
                "the code uses an undefined name: tell the Programmer to import every module and "
                "define every function it uses"
            )
        lowered = text.lower()
        if "timeout" in lowered or "timed out" in lowered:
            out.append(
                "the run timed out: use fewer operators or a smaller loop count, or ask for "
                "faster code"
            )
        failed_tests = [
            r.node_id for r in result.trace if r.operator == "Test" and r.passed is False
        ]
        if failed_tests:
            out.append(
                f"a test failed ({', '.join(dict.fromkeys(failed_tests))}): repair with a "
                "conditional Test ? Revise : done or a loop (Test -> Revise) * 2"
            )
        answer = (result.answer or "").strip()
        if not answer and not result.errors:
            out.append(
                "the workflow gave no answer: end it with a solving operator (Custom, "
                "AnswerGenerate, Programmer) followed by Format"
            )
        elif len(answer) > self.long_answer_chars:
            out.append(
                f"the answer is {len(answer)} characters long: add Format at the end to keep only "
                "the final answer"
            )
        return out


def _cut(text: str, n: int) -> str:
    text = " ".join(text.split())
    if len(text) <= n:
        return text
    return f"{text[:n]}… [{len(text) - n} more chars]"


__all__ = ["FeedbackRenderer", "Status"]
