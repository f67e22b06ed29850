"""What the policy reads: the system prompt and the user turns.

Everything here is generated: d_lib from the `OperatorLibrary`, the grammar's tag list and
examples from the constants and `GRAMMAR_EXAMPLES` of `flowsteer.actions` rendered by
`format_action` (tests check each example parses back to itself), so adding an operator or
a tag never requires editing a prompt by hand.

The chat the rollout builds is ``[system: system_prompt(library), user: canvas.reset()]``,
then per turn the policy's message and the canvas observation as the next user message.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from flowsteer.actions import ACTION_TYPES, FIELD_TAGS, GRAMMAR_EXAMPLES, format_action
from flowsteer.canvas.graph import LOOP_COUNT_MAX, LOOP_COUNT_MIN

if TYPE_CHECKING:
    from flowsteer.canvas.finish import FinishConstraints
    from flowsteer.operators.library import OperatorLibrary
    from flowsteer.tasks import Task

_ROLE = (
    "You are the Flow-Director. You build an agentic workflow that solves the task by editing "
    "an executable canvas, one action per turn. After each completed edit the canvas runs the "
    "current workflow on the backend model and shows you the result; use it to debug the "
    "workflow. Operators run in sequence; each reads the task and the previous step's output."
)


def system_prompt(
    library: OperatorLibrary,
    *,
    max_turns: int = 20,
    finish_constraints: FinishConstraints | None = None,
) -> str:
    """The policy's system prompt: role, d_lib, the action grammar with examples, the rules."""
    examples = "\n".join(f"- {desc}: {format_action(a)}" for desc, a in GRAMMAR_EXAMPLES)
    tags = ", ".join(f"<{t}>" for t in FIELD_TAGS)
    finish = (
        f"\n- finish is accepted when the workflow has {finish_constraints.describe()}."
        if finish_constraints is not None
        else ""
    )
    return f"""{_ROLE}

{library.describe()}

Actions ({", ".join(ACTION_TYPES)}). Write optional <think>…</think>, then exactly one action:
<action>TYPE</action> followed by its fields ({tags}).
{examples}

Rules:
- After add or modify, the canvas asks for the prompt of each new operator, in order: reply with the prompt text itself, or with set_prompt (an empty <prompt></prompt> keeps the default).
- Nodes have ids (n1, n2, ...); use them in <target>. <position> is the 1-based step the new node becomes; without it the node is appended.
- A conditional's condition must be a checker; its on_pass may be done. A parallel needs at least 2 operators; an ensemble operator needs a parallel block before it; a loop count is {LOOP_COUNT_MIN} to {LOOP_COUNT_MAX}.
- One action per turn; extra actions are ignored; actions inside ``` code fences are not read.
- You have {max_turns} turns; finish when the workflow is good.{finish}"""


def user_prompt(task: Task, *, max_turns: int = 20) -> str:
    """The first user turn: the task and the empty canvas."""
    parts = [f"Task ({task.kind}):", task.question.strip()]
    if task.context.strip():
        parts += ["Context:", task.context.strip()]
    parts.append(
        f"The canvas is empty. Build the workflow, one action per turn (turn 0/{max_turns})."
    )
    return "\n".join(parts)


__all__ = ["system_prompt", "user_prompt"]
