"""The rich terminal view of an `OrchestrationSession`: what happened, the workflow, the answer.

Printed once per turn (not a full-screen app), so the view works in any terminal, in a pipe and
in a recorded transcript alike. ``rich`` is imported here only: ``flowsteer --help`` stays fast.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from rich.console import Console, Group
from rich.panel import Panel
from rich.table import Table
from rich.text import Text
from rich.tree import Tree

if TYPE_CHECKING:
    from flowsteer.canvas.graph import WorkflowGraph
    from flowsteer.orchestration.session import Event, OrchestrationSession

HELP = (
    "Enter: one policy turn · text: an instruction to the policy · <action>…: a typed action "
    "(or /do TEXT) · /undo · /finish · /continue (the policy runs to the end) · Ctrl-C: quit"
)
_MARK = {True: "[green]accepted[/]", False: "[red]rejected[/]", None: ""}
_KIND = {"policy": "policy", "typed": "you (action)", "instruction": "you (instruction)",
         "undo": "undo", "finish": "finish", "error": "[red]error[/]"}  # fmt: skip


def workflow_tree(graph: WorkflowGraph) -> Tree:
    """The workflow drawn as a tree: parallel branches side by side under their block, the
    conditional's check with its pass and fail arms, a loop with its count."""
    root = Tree("[bold]workflow[/]" if len(graph) else "[dim]workflow (empty)[/]")

    def add(parent: Tree, node: Any) -> None:
        if not node.is_structure:
            parent.add(f"{node.name} [dim]{node.id}[/]")
            return
        if node.name == "parallel":
            branch = parent.add(f"[cyan]parallel[/] [dim]{node.id}[/]")
            for child in graph.children(node.id):
                add(branch, child)
        elif node.name == "conditional":
            branch = parent.add(f"[magenta]conditional[/] [dim]{node.id}[/]")
            check = graph.node(node.condition) if node.condition else None
            branch.add(f"check: {check.name if check else '?'}")
            fail = graph.node(node.on_fail) if node.on_fail else None
            branch.add(f"[red]fail ->[/] {fail.name if fail else '?'}")
            ok = graph.node(node.on_pass) if node.on_pass else None
            branch.add(f"[green]pass ->[/] {ok.name if ok else 'done'}")
        else:
            branch = parent.add(f"[yellow]loop x{node.count}[/] [dim]{node.id}[/]")
            for child in graph.children(node.id):
                add(branch, child)

    for node in graph.top_level():
        add(root, node)
    return root


def render(session: OrchestrationSession, last: int = 6) -> Group:
    """The view after the latest turn."""
    canvas = session.canvas
    events = Table(show_header=True, header_style="bold", expand=True)
    events.add_column("who", width=18)
    events.add_column("action / instruction", ratio=3)
    events.add_column("canvas", width=10)
    for event in session.events[-last:]:
        events.add_row(_KIND[event.kind], Text(_one_line(event.text)), _MARK[event.accepted])
    graph = canvas.graph
    workflow = Group(Text("DSL: " + (graph.to_dsl() or "(empty)")), workflow_tree(graph))
    feedback = _feedback(session.events)
    status = (
        f"turn {canvas.turn}/{canvas.max_turns} · state {canvas.state}"
        + (f" · awaiting the prompt of {canvas.awaiting}" if canvas.awaiting else "")
        + (" · [bold]done[/]" if session.done else "")
    )
    answer = Text("answer: " + (session.answer if session.answer is not None else "(none yet)"))
    return Group(
        Panel(events, title="actions"),
        Panel(workflow, title="workflow"),
        Panel(Text(feedback), title="canvas feedback"),
        Text.from_markup(status),
        answer,
    )


def show(console: Console, session: OrchestrationSession) -> None:
    console.print(render(session))


def _feedback(events: list[Event]) -> str:
    for event in reversed(events):
        if event.observation:
            return event.observation
        if event.kind == "error":
            return event.text
    return "(no feedback yet)"


def _one_line(text: str, n: int = 160) -> str:
    text = " ".join(text.split())
    return text if len(text) <= n else text[: n - 1] + "…"


__all__ = ["HELP", "render", "show", "workflow_tree"]
