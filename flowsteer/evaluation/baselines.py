"""The baselines a policy is compared with, on the same tasks and the same backend LLM.

* ``direct``: the backend answers the task in one call.
* ``cot``: the backend thinks step by step and answers, in one call.
* ``fixed``: a hand-written workflow per task kind, run by the real `WorkflowExecutor` (so the
  comparison isolates what the policy's choice of workflow adds over a sensible default):

  - math: ``Plan -> Programmer -> Verify ? Revise : done -> Format`` (the paper's example);
  - qa: ``Plan -> AnswerGenerate -> Review ? Revise : done -> Format`` (a reasoned answer,
    checked against the context, cut to a span);
  - code: ``Plan -> Custom -> Test ? Revise : done`` (the public tests are the checker; no
    Format, which could damage a program).

The untrained policy, the fourth baseline, runs through the policy path
(`flowsteer.evaluation.policy_eval`).
"""

from __future__ import annotations

import re

from flowsteer.canvas.executor import WorkflowExecutor
from flowsteer.canvas.graph import WorkflowGraph
from flowsteer.evaluation.record import EpisodeRecord
from flowsteer.llm.backend import LLMBackend, Message
from flowsteer.tasks import Task

FIXED_WORKFLOWS: dict[str, tuple[tuple[str, ...], ...]] = {
    # Each step: one operator, or ("?", condition, on_fail) for a conditional with `done`.
    "math": (("Plan",), ("Programmer",), ("?", "Verify", "Revise"), ("Format",)),
    "qa": (("Plan",), ("AnswerGenerate",), ("?", "Review", "Revise"), ("Format",)),
    "code": (("Plan",), ("Custom",), ("?", "Test", "Revise")),
}


def fixed_workflow(kind: str) -> WorkflowGraph:
    """The fixed baseline's workflow for a task kind (default prompts)."""
    if kind not in FIXED_WORKFLOWS:
        raise ValueError(
            f"no fixed workflow for task kind {kind!r}; kinds: {list(FIXED_WORKFLOWS)}"
        )
    graph = WorkflowGraph()
    for step in FIXED_WORKFLOWS[kind]:
        if step[0] == "?":
            graph.add_structure("conditional", list(step[1:]))
        else:
            graph.add_operator(step[0])
    return graph


_INSTRUCTION = {
    "math": "Solve the problem. End with the final answer on its own line as '#### <answer>'.",
    "qa": "Answer the question with a short answer span only (a few words).",
    "code": "Write the complete Python solution in one ```python code block.",
}
_COT = (
    "Think step by step, writing your reasoning first. Then write the final answer on the last "
    "line, starting with 'Answer:'"
)
_ANSWER_LINE = re.compile(r"^\s*\**answer\**\s*:\s*(.+?)\s*$", re.IGNORECASE | re.MULTILINE)


def task_prompt(task: Task, cot: bool) -> list[Message]:
    """The one-call prompt of the ``direct`` (``cot=False``) or ``cot`` baseline."""
    parts = []
    if task.context:
        parts.append(f"## Context\n{task.context.strip()}")
    parts.append(f"## Task\n{task.question.strip()}")
    instruction = _INSTRUCTION.get(task.kind, _INSTRUCTION["qa"])
    if cot:
        if task.kind == "code":
            instruction = "Think step by step, then " + instruction[0].lower() + instruction[1:]
        else:
            instruction = _COT + (
                " (for math, the final number or expression)." if task.kind == "math" else "."
            )
    parts.append(instruction)
    return [{"role": "user", "content": "\n\n".join(parts)}]


def cot_answer(text: str, kind: str) -> str:
    """The answer part of a chain-of-thought reply: the last ``Answer:`` line (code: all)."""
    if kind == "code":
        return text
    found = _ANSWER_LINE.findall(text)
    if not found:
        return text
    return found[-1] if kind != "math" else f"#### {found[-1]}"


async def answer_in_one_call(
    task: Task,
    index: int,
    backend: LLMBackend,
    *,
    cot: bool,
    max_tokens: int | None = None,
    temperature: float = 0.0,
) -> EpisodeRecord:
    """The ``direct`` or ``cot`` baseline on one task (unscored)."""
    sampling: dict[str, float | int] = {"temperature": temperature}
    if max_tokens is not None:
        sampling["max_tokens"] = max_tokens
    reply = await backend.complete(task_prompt(task, cot), **sampling)
    text = reply.text if reply.ok else None
    answer = None if text is None else (cot_answer(text, task.kind) if cot else text)
    return EpisodeRecord(
        system="cot" if cot else "direct",
        index=index,
        task_id=task.id,
        source=task.source,
        kind=task.kind,
        answer=answer,
        backend_calls=1,
        backend_tokens=reply.usage.total_tokens,
        error=reply.error,
    )


async def run_workflow_on(
    graph: WorkflowGraph, task: Task, index: int, executor: WorkflowExecutor, system: str
) -> EpisodeRecord:
    """Execute a saved or fixed workflow on one task (unscored); node errors are kept."""
    result = await executor.execute(graph, task)
    return EpisodeRecord(
        system=system,
        index=index,
        task_id=task.id,
        source=task.source,
        kind=task.kind,
        dsl=graph.to_dsl(),
        workflow_json=graph.to_json(),
        answer=result.answer,
        backend_calls=result.calls,
        backend_tokens=result.tokens,
        error="; ".join(result.errors)[:2000] or None,
    )


__all__ = [
    "FIXED_WORKFLOWS",
    "answer_in_one_call",
    "cot_answer",
    "fixed_workflow",
    "run_workflow_on",
    "task_prompt",
]
