"""The workflow graph the policy builds: operators and structures, in execution order.

Shape. A workflow is a top-level *sequence* of steps; a step is an operator node or a structure
node. A structure node owns an ordered tuple of operator children (structures do not nest):

* ``parallel``: children ``(A, B, ...)``, at least two, run on the same input.
* ``conditional``: children ``(condition, on_fail)`` or ``(condition, on_fail, on_pass)``; the
  condition must be a checker; a missing ``on_pass`` means ``done`` (pass the candidate through).
* ``loop``: children are the body, run up to ``count`` times (``LOOP_COUNT_MIN..LOOP_COUNT_MAX``).

Node ids are ``"n1"``, ``"n2"``, ... allocated by the graph and never reused within an episode,
even after a delete, so an id in an old observation can never silently mean another node.

Iterating, for the executor::

    for node in graph.top_level():            # the sequence, in order
        if node.is_structure:
            kids = graph.children(node.id)    # ordered operator Nodes
            ...                               # node.name is "parallel" / "conditional" / "loop",
        else:                                 # node.count the loop bound, node.on_pass (None =
            ...                               # done) for conditionals
    graph.walk()            # every node in execution order, a structure right before its children
    graph.operator_names()  # ["Plan", "Programmer", "Custom", "ScEnsemble", ...]
    graph.structure_kinds() # ["parallel", "conditional"]

A node's ``prompt`` is the instruction the policy wrote for it; ``""`` means the operator's
``default_prompt`` from the library (the executor resolves it).

Why not a networkx graph as the store: networkx has no ordered children and copying a DiGraph
costs tens of microseconds, while the canvas copies the graph on every edit so that a rejected
edit leaves it exactly as it was. The source of truth is therefore a dict of immutable `Node`s
plus the sequence; copying is a shallow dict/list copy. `to_networkx()` builds the networkx
view (cached until the next edit) in which sequence edges (``kind="next"``) and containment
edges (``kind="child"``, with ``order``) make the graph a DAG whose every node is reachable from
the first step; the invariant tests and analysis tools use that view.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace
from itertools import pairwise
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:  # networkx is imported lazily: the canvas hot path never needs it
    import networkx as nx

    from flowsteer.operators.library import OperatorLibrary

NodeKind = Literal["operator", "structure"]
STRUCTURES: tuple[str, ...] = ("parallel", "conditional", "loop")
LOOP_COUNT_MIN = 1
LOOP_COUNT_MAX = 5
DONE = "done"  # the conditional's pass-through branch in the DSL
JSON_VERSION = 1


class GraphEditError(ValueError):
    """An edit that cannot be applied (unknown id, a branch that cannot be removed, ...)."""


class GraphFormatError(ValueError):
    """`WorkflowGraph.from_json` got text that is not a workflow; the message says where."""


@dataclass(frozen=True, slots=True)
class Node:
    """One node. Immutable: edits replace nodes, which is what makes copies cheap.

    Attributes:
        id: ``"n<k>"``, unique for the life of the episode.
        kind: ``"operator"`` or ``"structure"``.
        name: The operator name (library spelling) or the structure kind.
        prompt: The policy's instruction for an operator (``""``: the default prompt).
        children: Ordered child ids of a structure (see the module docstring), else ``()``.
        count: The loop bound for a loop, else ``None``.
    """

    id: str
    kind: NodeKind
    name: str
    prompt: str = ""
    children: tuple[str, ...] = ()
    count: int | None = None

    @property
    def is_structure(self) -> bool:
        return self.kind == "structure"

    @property
    def condition(self) -> str | None:
        """A conditional's checker id."""
        return self.children[0] if self.name == "conditional" and self.children else None

    @property
    def on_fail(self) -> str | None:
        """A conditional's fail branch id."""
        return self.children[1] if self.name == "conditional" and len(self.children) > 1 else None

    @property
    def on_pass(self) -> str | None:
        """A conditional's pass branch id; ``None`` means done (pass through)."""
        return self.children[2] if self.name == "conditional" and len(self.children) > 2 else None


@dataclass(frozen=True, slots=True)
class GraphIssue:
    """One validation problem. `code` is stable (tests and feedback key on it)."""

    code: str
    message: str
    node_id: str | None = None


class WorkflowGraph:
    """An ordered workflow of operator and structure nodes (see the module docstring)."""

    __slots__ = ("_dsl", "_listing", "_next_id", "_nodes", "_nx", "_parent", "_sequence")

    def __init__(self) -> None:
        self._nodes: dict[str, Node] = {}
        self._sequence: list[str] = []
        self._parent: dict[str, str] = {}
        self._next_id = 1
        self._dsl: str | None = None
        self._listing: str | None = None
        self._nx: nx.DiGraph | None = None

    # ------------------------------------------------------------------ copying
    def copy(self) -> WorkflowGraph:
        """An independent copy, O(#nodes) shallow: nodes are immutable and shared."""
        new = WorkflowGraph.__new__(WorkflowGraph)
        new._nodes = self._nodes.copy()
        new._sequence = self._sequence.copy()
        new._parent = self._parent.copy()
        new._next_id = self._next_id
        new._dsl = self._dsl
        new._listing = self._listing
        new._nx = None
        return new

    __copy__ = copy

    def __deepcopy__(self, memo: dict) -> WorkflowGraph:
        return self.copy()

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, WorkflowGraph):
            return NotImplemented
        return (
            self._sequence == other._sequence
            and self._nodes == other._nodes
            and self._next_id == other._next_id
        )

    __hash__ = None  # mutable

    def _touch(self) -> None:
        self._dsl = None
        self._listing = None
        self._nx = None

    # ------------------------------------------------------------------- reading
    @property
    def sequence(self) -> tuple[str, ...]:
        """Top-level node ids in execution order."""
        return tuple(self._sequence)

    @property
    def next_id(self) -> str:
        """The id the next created node will get."""
        return f"n{self._next_id}"

    def node(self, node_id: str) -> Node:
        """The node `node_id`; raises `GraphEditError` with the known ids if absent."""
        try:
            return self._nodes[node_id]
        except KeyError:
            raise GraphEditError(self._unknown_id_message(node_id)) from None

    def get(self, node_id: str) -> Node | None:
        return self._nodes.get(node_id)

    def __contains__(self, node_id: object) -> bool:
        return node_id in self._nodes

    def __len__(self) -> int:
        return len(self._nodes)

    def __bool__(self) -> bool:
        return True  # an empty graph is still a graph (len() would make it falsy)

    def top_level(self) -> list[Node]:
        """The top-level nodes, in order."""
        nodes = self._nodes
        return [nodes[i] for i in self._sequence]

    def children(self, node_id: str) -> list[Node]:
        """A structure's children, in order (``[]`` for an operator)."""
        nodes = self._nodes
        return [nodes[c] for c in self.node(node_id).children]

    def parent(self, node_id: str) -> str | None:
        """The id of the structure holding `node_id`, or ``None`` at top level."""
        return self._parent.get(node_id)

    def step_index(self, node_id: str) -> int:
        """0-based index in the sequence of the step that is or holds `node_id`."""
        return self._sequence.index(self._parent.get(node_id, node_id))

    def walk(self) -> Iterator[Node]:
        """Every node in execution order; a structure comes right before its children."""
        nodes = self._nodes
        for nid in self._sequence:
            node = nodes[nid]
            yield node
            for c in node.children:
                yield nodes[c]

    def operator_nodes(self) -> list[Node]:
        """Operator nodes in execution order, including those inside structures."""
        return [n for n in self.walk() if n.kind == "operator"]

    def operator_names(self) -> list[str]:
        """Operator names in execution order, including those inside structures."""
        return [n.name for n in self.walk() if n.kind == "operator"]

    def structure_kinds(self) -> list[str]:
        """Structure kinds in execution order, e.g. ``["parallel", "conditional"]``."""
        nodes = self._nodes
        return [nodes[i].name for i in self._sequence if nodes[i].kind == "structure"]

    @property
    def num_operators(self) -> int:
        return sum(1 for n in self._nodes.values() if n.kind == "operator")

    # ------------------------------------------------------------------- editing
    # Edits do not validate semantics (that needs the library): apply them to a `copy()`,
    # call `validate(library)`, and keep the copy only if it is clean. That is what the
    # canvas does. They do raise `GraphEditError` for edits that cannot be expressed.
    def _new_id(self) -> str:
        nid = f"n{self._next_id}"
        self._next_id += 1
        return nid

    def _insert(self, nid: str, index: int | None) -> None:
        n = len(self._sequence)
        if index is None:
            index = n
        if not 0 <= index <= n:
            raise GraphEditError(f"position {index + 1} is out of range; use 1..{n + 1}")
        self._sequence.insert(index, nid)

    def add_operator(self, name: str, prompt: str = "", index: int | None = None) -> str:
        """Insert an operator step at 0-based `index` (default: append); returns its id."""
        nid = self._new_id()
        self._insert(nid, index)
        self._nodes[nid] = Node(nid, "operator", name, prompt)
        self._touch()
        return nid

    def add_structure(
        self,
        kind: str,
        children: Sequence[str],
        count: int | None = None,
        index: int | None = None,
    ) -> str:
        """Insert a structure step whose children are operators named `children` (for a
        conditional: condition, on_fail[, on_pass]); returns the structure's id. The
        structure's id is allocated first, then its children's, left to right."""
        if kind not in STRUCTURES:
            raise GraphEditError(f"unknown structure {kind!r}; structures are {list(STRUCTURES)}")
        sid = self._new_id()
        self._insert(sid, index)
        kids = self._make_children(sid, children)
        self._nodes[sid] = Node(sid, "structure", kind, "", kids, count if kind == "loop" else None)
        self._touch()
        return sid

    def _make_children(self, sid: str, names: Sequence[str]) -> tuple[str, ...]:
        kids = []
        for name in names:
            cid = self._new_id()
            self._nodes[cid] = Node(cid, "operator", name)
            self._parent[cid] = sid
            kids.append(cid)
        return tuple(kids)

    def remove(self, node_id: str) -> list[str]:
        """Delete a node (a structure with its children); returns the removed ids.

        Removing a conditional's condition or fail branch is refused (the conditional would
        lose its meaning); removing its pass branch turns it into ``done``.
        """
        node = self.node(node_id)
        parent_id = self._parent.get(node_id)
        if parent_id is None:
            self._sequence.remove(node_id)
            removed = [node_id, *node.children]
            for c in node.children:
                del self._nodes[c]
                del self._parent[c]
        else:
            parent = self._nodes[parent_id]
            if parent.name == "conditional" and parent.children.index(node_id) < 2:
                role = "condition" if parent.children[0] == node_id else "fail branch"
                raise GraphEditError(
                    f"{node_id} is the {role} of conditional {parent_id}; delete {parent_id} "
                    f"instead, or modify {node_id} to another operator"
                )
            kids = tuple(c for c in parent.children if c != node_id)
            self._nodes[parent_id] = replace(parent, children=kids)
            del self._parent[node_id]
            removed = [node_id]
        del self._nodes[node_id]
        self._touch()
        return removed

    def set_operator(self, node_id: str, name: str) -> None:
        """Change an operator node's operator, keeping its id; its prompt resets to default."""
        node = self.node(node_id)
        if node.kind != "operator":
            raise GraphEditError(
                f"{node_id} is a {node.name} structure, not an operator; change its children "
                f"with <operators>, <condition>, <on_fail>, <on_pass> or <count>"
            )
        self._nodes[node_id] = replace(node, name=name, prompt="")
        self._touch()

    def set_prompt(self, node_id: str, prompt: str) -> None:
        """Set an operator node's prompt (``""``: back to the default)."""
        node = self.node(node_id)
        if node.kind != "operator":
            kids = ", ".join(node.children)
            raise GraphEditError(
                f"{node_id} is a {node.name} structure and has no prompt; set the prompt of "
                f"one of its operators ({kids})"
            )
        self._nodes[node_id] = replace(node, prompt=prompt)
        self._touch()

    def set_count(self, node_id: str, count: int) -> None:
        """Set a loop's bound."""
        node = self.node(node_id)
        if node.name != "loop":
            raise GraphEditError(f"{node_id} is not a loop; only a loop has a <count>")
        self._nodes[node_id] = replace(node, count=count)
        self._touch()

    def set_children(self, node_id: str, names: Sequence[str]) -> tuple[str, ...]:
        """Replace a structure's children with new operator nodes; returns their new ids."""
        node = self.node(node_id)
        if node.kind != "structure":
            raise GraphEditError(f"{node_id} is an operator and has no children")
        for c in node.children:
            del self._nodes[c]
            del self._parent[c]
        kids = self._make_children(node_id, names)
        self._nodes[node_id] = replace(node, children=kids)
        self._touch()
        return kids

    def set_branch(self, node_id: str, role: str, name: str | None) -> str | None:
        """Replace a conditional's ``condition``/``on_fail``/``on_pass`` with a new operator
        node (``name=None`` or ``"done"`` for on_pass: pass through). Returns the new id."""
        node = self.node(node_id)
        if node.name != "conditional":
            raise GraphEditError(f"{node_id} is not a conditional; only a conditional has {role}")
        slot = ("condition", "on_fail", "on_pass").index(role)
        kids = list(node.children)
        new_id = None
        if name is None or name.lower() == DONE:
            if slot < 2:
                raise GraphEditError(f"a conditional's {role} cannot be done; name an operator")
        else:
            new_id = self._make_children(node_id, [name])[0]
        if slot < len(kids):
            old = kids[slot]
            del self._nodes[old]
            del self._parent[old]
            if new_id is None:
                kids.pop(slot)
            else:
                kids[slot] = new_id
        elif new_id is not None:
            kids.append(new_id)
        self._nodes[node_id] = replace(node, children=tuple(kids))
        self._touch()
        return new_id

    def _unknown_id_message(self, node_id: str) -> str:
        known = ", ".join(f"{n.id} {n.name}" for n in self.walk()) or "none: the canvas is empty"
        return f"no node {node_id!r}; nodes are {known}"

    # --------------------------------------------------------------- validation
    def validate(self, library: OperatorLibrary | None = None) -> list[GraphIssue]:
        """Every problem of the workflow, in execution order (``[]`` when valid).

        Structural checks always run; with a `library`, so do the semantic ones: unknown
        operator or structure, a conditional whose condition is not a checker, an ensemble
        operator with nothing to choose from (it needs a parallel block earlier in the
        sequence and may not sit inside a parallel block).
        """
        issues: list[GraphIssue] = []
        nodes = self._nodes
        seen_parallel = False
        for nid in self._sequence:
            node = nodes[nid]
            if node.kind == "structure":
                issues.extend(self._check_structure(node, library))
            for op in (node,) if node.kind == "operator" else [nodes[c] for c in node.children]:
                if library is None:
                    continue
                spec = library.find(op.name)
                if spec is None:
                    issues.append(
                        GraphIssue(
                            "unknown_operator",
                            f"{op.id}: {library.unknown_message(op.name)}",
                            op.id,
                        )
                    )
                elif spec.category == "ensemble" and (not seen_parallel or node.name == "parallel"):
                    issues.append(
                        GraphIssue(
                            "ensemble_without_candidates",
                            f"{op.id} {op.name} has nothing to choose from: it needs a parallel "
                            "block of solvers before it, e.g. [Programmer, Custom] -> "
                            f"{op.name}",
                            op.id,
                        )
                    )
            if node.name == "parallel":
                seen_parallel = True
        return issues

    def _check_structure(self, node: Node, library: OperatorLibrary | None) -> list[GraphIssue]:
        issues = []
        nid, kind, n = node.id, node.name, len(node.children)
        for c in node.children:
            if self._nodes[c].kind != "operator":
                issues.append(GraphIssue("nested_structure", f"{nid}: structures do not nest", nid))
        if library is not None and library.structure(kind) is None:
            issues.append(
                GraphIssue("unknown_structure", f"{nid}: structure {kind!r} is not enabled", nid)
            )
        if kind == "parallel" and n < 2:
            issues.append(
                GraphIssue(
                    "parallel_too_small",
                    f"parallel {nid} has {n} operator(s); a parallel needs at least 2",
                    nid,
                )
            )
        elif kind == "conditional":
            if n not in (2, 3):
                issues.append(
                    GraphIssue(
                        "conditional_shape",
                        f"conditional {nid} needs a condition, an on_fail and an optional "
                        f"on_pass, got {n} operator(s)",
                        nid,
                    )
                )
            elif library is not None:
                cond = self._nodes[node.children[0]]
                spec = library.find(cond.name)
                if spec is not None and not spec.is_checker:
                    issues.append(
                        GraphIssue(
                            "condition_not_checker",
                            f"the condition of conditional {nid} is {cond.name}, which is not a "
                            f"checker; use one of {', '.join(library.checkers)}",
                            nid,
                        )
                    )
        elif kind == "loop":
            if n < 1:
                issues.append(GraphIssue("loop_empty", f"loop {nid} has an empty body", nid))
            if node.count is None or not LOOP_COUNT_MIN <= node.count <= LOOP_COUNT_MAX:
                issues.append(
                    GraphIssue(
                        "loop_count_range",
                        f"loop {nid} count is {node.count}; it must be between "
                        f"{LOOP_COUNT_MIN} and {LOOP_COUNT_MAX}",
                        nid,
                    )
                )
        return issues

    # ----------------------------------------------------------------- rendering
    def to_dsl(self) -> str:
        """The one-line form, e.g. ``Plan -> [Programmer, Custom] -> ScEnsemble ->
        Verify ? Revise : done -> Format``; loops as ``(Review -> Revise) * 3``; an empty
        workflow is ``(empty)``. Cached until the next edit."""
        if self._dsl is None:
            self._dsl = " -> ".join(self._step_dsl(n) for n in self.top_level()) or "(empty)"
        return self._dsl

    def _step_dsl(self, node: Node) -> str:
        if node.kind == "operator":
            return node.name
        names = [self._nodes[c].name for c in node.children]
        if node.name == "parallel":
            return f"[{', '.join(names)}]"
        if node.name == "loop":
            return f"({' -> '.join(names)}) * {node.count}"
        cond, fail = [*names, "?", "?"][:2]
        return f"{cond} ? {fail} : {names[2] if len(names) > 2 else DONE}"

    def describe_nodes(self) -> str:
        """The nodes with ids, numbered by step: ``1. n1 Plan | 2. n2 parallel [n3 ...]``.
        Cached until the next edit."""
        if self._listing is None:
            self._listing = self._describe_nodes()
        return self._listing

    def _describe_nodes(self) -> str:
        parts = []
        nodes = self._nodes
        for i, nid in enumerate(self._sequence, 1):
            node = nodes[nid]
            if node.kind == "operator":
                parts.append(f"{i}. {nid} {node.name}")
                continue
            kids = [nodes[c] for c in node.children]
            if node.name == "conditional":
                roles = ("condition", "on_fail", "on_pass")
                inner = ", ".join(f"{r}={k.id} {k.name}" for r, k in zip(roles, kids, strict=False))
                if len(kids) == 2:
                    inner += ", on_pass=done"
            else:
                inner = ", ".join(f"{k.id} {k.name}" for k in kids)
            extra = f" x{node.count}" if node.name == "loop" else ""
            parts.append(f"{i}. {nid} {node.name}{extra} [{inner}]")
        return " | ".join(parts) if parts else "(none)"

    def to_mermaid(self) -> str:
        """A Mermaid flowchart: one subgraph per structure, branches and loop-backs labelled."""
        lines = ["flowchart LR"]
        nodes = self._nodes

        def box(n: Node) -> str:
            return f'{n.id}["{n.id} {n.name}"]'

        for nid in self._sequence:
            node = nodes[nid]
            if node.kind == "operator":
                lines.append(f"  {box(node)}")
                continue
            label = f"{nid} {node.name}" + (f" x{node.count}" if node.name == "loop" else "")
            lines.append(f'  subgraph {nid}["{label}"]')
            kids = [nodes[c] for c in node.children]
            lines.extend(f"    {box(k)}" for k in kids)
            if node.name == "conditional" and len(kids) >= 2:
                lines.append(f"    {kids[0].id} -- fail --> {kids[1].id}")
                if len(kids) > 2:
                    lines.append(f"    {kids[0].id} -- pass --> {kids[2].id}")
            elif node.name == "loop" and kids:
                lines.extend(f"    {a.id} --> {b.id}" for a, b in pairwise(kids))
                lines.append(f"    {kids[-1].id} -. repeat .-> {kids[0].id}")
            lines.append("  end")
        lines.extend(f"  {a} --> {b}" for a, b in pairwise(self._sequence))
        return "\n".join(lines)

    def to_networkx(self) -> nx.DiGraph:
        """The networkx view (cached until the next edit; do not mutate it). Node attributes:
        ``kind``, ``name``, ``prompt``, ``count``; edge attribute ``kind`` is ``"next"``
        between steps or ``"child"`` (with ``order``) from a structure to its children."""
        if self._nx is None:
            import networkx as nx

            g = nx.DiGraph()
            for n in self.walk():
                g.add_node(n.id, kind=n.kind, name=n.name, prompt=n.prompt, count=n.count)
                for i, c in enumerate(n.children):
                    g.add_edge(n.id, c, kind="child", order=i)
            for a, b in pairwise(self._sequence):
                g.add_edge(a, b, kind="next")
            self._nx = g
        return self._nx

    # --------------------------------------------------------------- serialising
    def to_dict(self) -> dict[str, Any]:
        """A nested JSON-ready form: ``{"version", "next_id", "steps": [...]}``."""

        def op(n: Node) -> dict[str, Any]:
            return {"id": n.id, "operator": n.name, "prompt": n.prompt}

        steps = []
        for n in self.top_level():
            if n.kind == "operator":
                steps.append(op(n))
            else:
                step: dict[str, Any] = {"id": n.id, "structure": n.name}
                if n.name == "loop":
                    step["count"] = n.count
                step["children"] = [op(self._nodes[c]) for c in n.children]
                steps.append(step)
        return {"version": JSON_VERSION, "next_id": self._next_id, "steps": steps}

    def to_json(self, indent: int | None = None) -> str:
        """JSON text of `to_dict` (prompts included); `from_json` inverts it exactly."""
        return json.dumps(self.to_dict(), indent=indent, ensure_ascii=False)

    @classmethod
    def from_json(cls, text: str | bytes) -> WorkflowGraph:
        """Parse `to_json` output; raises `GraphFormatError` naming the problem and where."""
        try:
            data = json.loads(text)
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise GraphFormatError(f"workflow JSON does not parse: {exc}") from None
        return cls.from_dict(data)

    @classmethod
    def from_dict(cls, data: Any) -> WorkflowGraph:
        """Inverse of `to_dict`; structural checks only (call `validate` for semantics)."""
        if not isinstance(data, dict):
            raise GraphFormatError(f"a workflow is a JSON object, got {type(data).__name__}")
        if data.get("version", JSON_VERSION) != JSON_VERSION:
            raise GraphFormatError(f"unsupported workflow version {data.get('version')!r}")
        steps = data.get("steps")
        if not isinstance(steps, list):
            raise GraphFormatError("a workflow needs a 'steps' list")
        g = cls()
        max_id = 0

        def take_id(obj: dict, where: str) -> str:
            nonlocal max_id
            nid = obj.get("id")
            if not isinstance(nid, str) or not nid[1:].isdigit() or nid[:1] != "n":
                raise GraphFormatError(f"{where}: 'id' must look like 'n3', got {nid!r}")
            if nid in g._nodes:
                raise GraphFormatError(f"{where}: duplicate id {nid!r}")
            max_id = max(max_id, int(nid[1:]))
            return nid

        def take_op(obj: Any, where: str) -> Node:
            if not isinstance(obj, dict) or not isinstance(obj.get("operator"), str):
                raise GraphFormatError(f"{where}: an operator step needs a string 'operator'")
            prompt = obj.get("prompt", "")
            if not isinstance(prompt, str):
                raise GraphFormatError(f"{where}: 'prompt' must be a string")
            node = Node(take_id(obj, where), "operator", obj["operator"], prompt)
            g._nodes[node.id] = node
            return node

        for i, step in enumerate(steps):
            where = f"steps[{i}]"
            if isinstance(step, dict) and "structure" in step:
                kind = step["structure"]
                if kind not in STRUCTURES:
                    raise GraphFormatError(f"{where}: unknown structure {kind!r}")
                sid = take_id(step, where)
                raw_kids = step.get("children")
                if not isinstance(raw_kids, list):
                    raise GraphFormatError(f"{where}: a structure needs a 'children' list")
                kids = tuple(
                    take_op(k, f"{where}.children[{j}]").id for j, k in enumerate(raw_kids)
                )
                count = step.get("count")
                if kind == "loop" and not isinstance(count, int):
                    raise GraphFormatError(f"{where}: a loop needs an integer 'count'")
                g._nodes[sid] = Node(
                    sid, "structure", kind, "", kids, count if kind == "loop" else None
                )
                for k in kids:
                    g._parent[k] = sid
                g._sequence.append(sid)
            else:
                g._sequence.append(take_op(step, where).id)
        next_id = data.get("next_id", max_id + 1)
        if not isinstance(next_id, int) or next_id <= max_id:
            raise GraphFormatError(f"'next_id' must be an integer above every id, got {next_id!r}")
        g._next_id = next_id
        return g

    def __repr__(self) -> str:
        return f"WorkflowGraph({self.to_dsl()!r})"


__all__ = [
    "DONE",
    "LOOP_COUNT_MAX",
    "LOOP_COUNT_MIN",
    "STRUCTURES",
    "GraphEditError",
    "GraphFormatError",
    "GraphIssue",
    "Node",
    "NodeKind",
    "WorkflowGraph",
]
