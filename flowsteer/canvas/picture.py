"""A workflow graph drawn as a picture: SVG (no dependency) or PNG (matplotlib).

The layout is computed once, as a list of shapes in pixel coordinates, and written by either
backend, so the SVG and the PNG of a workflow always show the same thing. The drawing reads
top to bottom: the question enters at the top, each step of the sequence follows, the answer
leaves at the bottom. Operators are boxes coloured by their library category; a parallel
structure puts its branches side by side; a conditional shows its checker with a red *fail* arm
and a green *pass* arm (or *done*, the pass-through); a loop frames its body with a back edge
marked with its count. No system binary (graphviz, mermaid-cli) is needed.

    >>> from flowsteer.canvas.graph import WorkflowGraph
    >>> g = WorkflowGraph()
    >>> _ = g.add_operator("Plan"); _ = g.add_structure("parallel", ["Programmer", "Custom"])
    >>> svg = workflow_picture(g).to_svg()
    >>> svg.startswith("<svg") and "Programmer" in svg and "parallel" in svg
    True
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING
from xml.sax.saxutils import escape

if TYPE_CHECKING:
    from flowsteer.canvas.graph import Node, WorkflowGraph
    from flowsteer.operators.library import OperatorLibrary

# Fill colours by operator category (the default library's six, and anything else).
CATEGORY_COLOURS: dict[str, str] = {
    "planning": "#dbeafe",
    "solving": "#dcfce7",
    "verification": "#fef3c7",
    "revision": "#fce7f3",
    "ensemble": "#ede9fe",
    "formatting": "#e5e7eb",
}
OTHER_COLOUR = "#ffffff"
FAIL_COLOUR = "#dc2626"
PASS_COLOUR = "#16a34a"
LOOP_COLOUR = "#2563eb"
INK = "#111827"
FRAME = "#6b7280"

BOX_H = 38
V_GAP = 30
H_GAP = 22
PAD = 14
LABEL_H = 18
FONT = 13
CHAR_W = 8.2  # average glyph width of the bold 13 px sans-serif font, for box widths
MARGIN = 20


@dataclass(frozen=True)
class Box:
    """A rectangle; `dashed` frames a structure, `rounded` marks a terminal (question/answer)."""

    x: float
    y: float
    w: float
    h: float
    fill: str = "none"
    stroke: str = INK
    dashed: bool = False
    rounded: bool = False


@dataclass(frozen=True)
class Label:
    """Text anchored at its centre (``anchor="middle"``), its left (``"start"``) or right end."""

    x: float
    y: float
    text: str
    size: int = FONT
    colour: str = INK
    bold: bool = False
    anchor: str = "middle"


@dataclass(frozen=True)
class Edge:
    """A polyline with an arrow head at its last point."""

    points: tuple[tuple[float, float], ...]
    colour: str = INK


@dataclass
class Picture:
    """A laid-out workflow: its size in pixels and its shapes, in drawing order."""

    width: float
    height: float
    shapes: list[Box | Label | Edge] = field(default_factory=list)

    def to_svg(self) -> str:
        """A standalone SVG document (UTF-8 text, no external references)."""
        w, h = round(self.width), round(self.height)
        out = [
            f'<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" '
            f'viewBox="0 0 {w} {h}" font-family="DejaVu Sans, Arial, sans-serif">',
            "<defs>",
        ]
        colours = sorted({s.colour for s in self.shapes if isinstance(s, Edge)})
        for i, colour in enumerate(colours):
            out.append(
                f'<marker id="a{i}" viewBox="0 0 10 10" refX="10" refY="5" markerWidth="7" '
                f'markerHeight="7" orient="auto-start-reverse"><path d="M0,0 L10,5 L0,10 z" '
                f'fill="{colour}"/></marker>'
            )
        out += ["</defs>", f'<rect width="{w}" height="{h}" fill="#ffffff"/>']
        for s in self.shapes:
            if isinstance(s, Box):
                dash = ' stroke-dasharray="5,4"' if s.dashed else ""
                rx = s.h / 2 if s.rounded else (4 if not s.dashed else 8)
                out.append(
                    f'<rect x="{s.x:.1f}" y="{s.y:.1f}" width="{s.w:.1f}" height="{s.h:.1f}" '
                    f'rx="{rx:.1f}" fill="{s.fill}" stroke="{s.stroke}" stroke-width="1.3"{dash}/>'
                )
            elif isinstance(s, Label):
                weight = ' font-weight="bold"' if s.bold else ""
                out.append(
                    f'<text x="{s.x:.1f}" y="{s.y:.1f}" font-size="{s.size}" fill="{s.colour}" '
                    f'text-anchor="{s.anchor}" dominant-baseline="central"{weight}>'
                    f"{escape(s.text)}</text>"
                )
            else:
                points = " ".join(f"{x:.1f},{y:.1f}" for x, y in s.points)
                out.append(
                    f'<polyline points="{points}" fill="none" stroke="{s.colour}" '
                    f'stroke-width="1.5" marker-end="url(#a{colours.index(s.colour)})"/>'
                )
        out.append("</svg>")
        return "\n".join(out) + "\n"

    def to_png(self, path: str | Path, dpi: int = 100) -> Path:
        """Draw the same shapes with matplotlib (Agg) into a PNG file."""
        try:
            import matplotlib

            matplotlib.use("Agg")
            import matplotlib.pyplot as plt
            from matplotlib.patches import FancyArrowPatch, FancyBboxPatch
            from matplotlib.path import Path as MplPath
        except ImportError as exc:  # pragma: no cover - matplotlib is an install requirement
            raise ImportError("a PNG picture needs matplotlib (pip install matplotlib)") from exc
        scale = 100 / dpi
        fig = plt.figure(figsize=(self.width / 100, self.height / 100), dpi=dpi)
        ax = fig.add_axes((0, 0, 1, 1))
        ax.set_xlim(0, self.width)
        ax.set_ylim(self.height, 0)
        ax.axis("off")
        for s in self.shapes:
            if isinstance(s, Box):
                style = f"round,pad=0,rounding_size={s.h / 2 if s.rounded else 4}"
                ax.add_patch(
                    FancyBboxPatch(
                        (s.x, s.y), s.w, s.h, boxstyle=style, linewidth=1.3,
                        facecolor=s.fill if s.fill != "none" else "none", edgecolor=s.stroke,
                        linestyle=(0, (5, 4)) if s.dashed else "-",
                    )
                )  # fmt: skip
            elif isinstance(s, Label):
                ax.text(
                    s.x, s.y, s.text, fontsize=s.size * 0.75 * scale, color=s.colour,
                    ha={"middle": "center", "start": "left", "end": "right"}[s.anchor], va="center",
                    fontweight="bold" if s.bold else "normal",
                )  # fmt: skip
            else:
                codes = [MplPath.MOVETO] + [MplPath.LINETO] * (len(s.points) - 1)
                ax.add_patch(
                    FancyArrowPatch(
                        path=MplPath(s.points, codes), arrowstyle="-|>", mutation_scale=10,
                        color=s.colour, linewidth=1.5,
                    )
                )  # fmt: skip
        path = Path(path)
        fig.savefig(path, dpi=dpi, facecolor="white")
        plt.close(fig)
        return path


def workflow_picture(graph: WorkflowGraph, library: OperatorLibrary | None = None) -> Picture:
    """Lay out `graph` top to bottom (the default library colours operators when none given)."""
    if library is None:
        from flowsteer.operators.library import OperatorLibrary

        library = OperatorLibrary.default()
    layout = _Layout(graph, library)
    return layout.picture()


def save_workflow_picture(
    graph: WorkflowGraph, path: str | Path, library: OperatorLibrary | None = None
) -> Path:
    """Write the picture as ``.svg`` or ``.png`` (chosen by the suffix); returns the path."""
    path = Path(path)
    picture = workflow_picture(graph, library)
    if path.suffix.lower() == ".svg":
        path.write_text(picture.to_svg(), encoding="utf-8")
        return path
    if path.suffix.lower() == ".png":
        return picture.to_png(path)
    raise ValueError(f"workflow picture {path}: the file name must end in .svg or .png")


class _Layout:
    """Measures each step (width, height), then places the sequence on one vertical axis."""

    def __init__(self, graph: WorkflowGraph, library: OperatorLibrary) -> None:
        self.graph = graph
        self.library = library
        self.shapes: list[Box | Label | Edge] = []

    # -- sizes -----------------------------------------------------------------------------

    def _op_width(self, node: Node) -> float:
        return max(96.0, CHAR_W * max(len(node.name), len(node.id) + 2) + 28)

    def _size(self, node: Node) -> tuple[float, float]:
        if not node.is_structure:
            return self._op_width(node), BOX_H
        kids = self.graph.children(node.id)
        widths = [self._op_width(k) for k in kids]
        if node.name == "parallel":
            inner_w = sum(widths) + H_GAP * (len(kids) - 1)
            inner_h = V_GAP + BOX_H + V_GAP
        elif node.name == "conditional":
            arms = widths[1:2] + (
                [self._op_width(self.graph.node(node.on_pass))] if node.on_pass else [70.0]
            )
            inner_w = max(widths[0], sum(arms) + H_GAP * 3)
            inner_h = BOX_H + V_GAP + BOX_H + V_GAP
        else:  # loop
            inner_w = max(widths, default=96.0) + 2 * H_GAP + 30  # room for the back edge
            inner_h = len(kids) * BOX_H + (len(kids) - 1) * V_GAP
        return inner_w + 2 * PAD, inner_h + 2 * PAD + LABEL_H

    # -- drawing ---------------------------------------------------------------------------

    def _op(self, node: Node, cx: float, y: float) -> None:
        w = self._op_width(node)
        category = self.library.get(node.name).category if node.name in self.library else None
        fill = CATEGORY_COLOURS.get(category or "", OTHER_COLOUR)
        self.shapes.append(Box(cx - w / 2, y, w, BOX_H, fill=fill))
        self.shapes.append(Label(cx, y + BOX_H / 2 - 6, node.name, bold=True))
        self.shapes.append(Label(cx, y + BOX_H / 2 + 9, node.id, size=10, colour=FRAME))

    def _step(self, node: Node, cx: float, y: float) -> float:
        """Draw one step with its top centre at (cx, y); returns its bottom y."""
        w, h = self._size(node)
        if not node.is_structure:
            self._op(node, cx, y)
            return y + h
        title = f"loop ×{node.count}" if node.name == "loop" else node.name
        self.shapes.append(Box(cx - w / 2, y, w, h, stroke=FRAME, dashed=True))
        self.shapes.append(
            Label(cx - w / 2 + 10, y + 12, title, size=11, colour=FRAME, anchor="start")
        )
        top = y + LABEL_H + PAD
        kids = self.graph.children(node.id)
        if node.name == "parallel":
            self._parallel(kids, cx, top)
        elif node.name == "conditional":
            self._conditional(node, kids, cx, top)
        else:
            self._loop(node, kids, cx, w, top)
        return y + h

    def _parallel(self, kids: list[Node], cx: float, top: float) -> None:
        widths = [self._op_width(k) for k in kids]
        x = cx - (sum(widths) + H_GAP * (len(kids) - 1)) / 2
        row = top + V_GAP
        for kid, w in zip(kids, widths, strict=True):
            kx = x + w / 2
            self.shapes.append(Edge(((cx, top), (kx, row))))
            self._op(kid, kx, row)
            self.shapes.append(Edge(((kx, row + BOX_H), (cx, row + BOX_H + V_GAP))))
            x += w + H_GAP

    def _conditional(self, node: Node, kids: list[Node], cx: float, top: float) -> None:
        condition, on_fail = kids[0], kids[1]
        self._op(condition, cx, top)
        row = top + BOX_H + V_GAP
        fail_w = self._op_width(on_fail)
        pass_node = self.graph.node(node.on_pass) if node.on_pass else None
        pass_w = self._op_width(pass_node) if pass_node else 70.0
        span = fail_w + pass_w + H_GAP * 3
        fail_x = cx - span / 2 + fail_w / 2
        pass_x = cx + span / 2 - pass_w / 2
        bottom = row + BOX_H + V_GAP
        self.shapes.append(Edge(((cx - 8, top + BOX_H), (fail_x, row)), colour=FAIL_COLOUR))
        self.shapes.append(
            Label((cx + fail_x) / 2 - 14, top + BOX_H + V_GAP / 2, "fail", 11, FAIL_COLOUR)
        )
        self._op(on_fail, fail_x, row)
        self.shapes.append(Edge(((cx + 8, top + BOX_H), (pass_x, row)), colour=PASS_COLOUR))
        self.shapes.append(
            Label((cx + pass_x) / 2 + 14, top + BOX_H + V_GAP / 2, "pass", 11, PASS_COLOUR)
        )
        if pass_node is not None:
            self._op(pass_node, pass_x, row)
        else:
            self.shapes.append(
                Box(
                    pass_x - pass_w / 2,
                    row,
                    pass_w,
                    BOX_H,
                    fill="#f0fdf4",
                    stroke=PASS_COLOUR,
                    rounded=True,
                )
            )
            self.shapes.append(
                Label(pass_x, row + BOX_H / 2, "done", colour=PASS_COLOUR, bold=True)
            )
        for x in (fail_x, pass_x):
            self.shapes.append(Edge(((x, row + BOX_H), (cx, bottom))))

    def _loop(self, node: Node, kids: list[Node], cx: float, w: float, top: float) -> None:
        y = top
        for i, kid in enumerate(kids):
            if i:
                self.shapes.append(Edge(((cx, y - V_GAP), (cx, y))))
            self._op(kid, cx, y)
            y += BOX_H + V_GAP
        last_bottom = y - V_GAP
        right = cx + w / 2 - PAD - 4
        edge_x = max(cx + self._op_width(kids[-1]) / 2, cx + self._op_width(kids[0]) / 2)
        self.shapes.append(
            Edge(
                ((cx + 10, last_bottom), (cx + 10, last_bottom + PAD / 2), (right, last_bottom + PAD / 2),
                 (right, top + BOX_H / 2), (edge_x, top + BOX_H / 2)),
                colour=LOOP_COLOUR,
            )
        )  # fmt: skip
        self.shapes.append(
            Label(
                right - 4, (top + last_bottom) / 2, f"×{node.count}", 11, LOOP_COLOUR, True, "end"
            )
        )

    def picture(self) -> Picture:
        steps = self.graph.top_level()
        sizes = [self._size(s) for s in steps]
        width = max([w for w, _ in sizes] + [200.0]) + 2 * MARGIN
        cx = width / 2
        y = MARGIN
        self.shapes.append(Box(cx - 60, y, 120, 30, fill="#f9fafb", stroke=FRAME, rounded=True))
        self.shapes.append(Label(cx, y + 15, "question", colour=FRAME))
        y += 30
        if not steps:
            self.shapes.append(Label(cx, y + V_GAP + 10, "(empty workflow)", colour=FRAME))
            y += V_GAP + 20
        for node in steps:
            self.shapes.append(Edge(((cx, y), (cx, y + V_GAP))))
            y = self._step(node, cx, y + V_GAP)
        self.shapes.append(Edge(((cx, y), (cx, y + V_GAP))))
        y += V_GAP
        self.shapes.append(Box(cx - 60, y, 120, 30, fill="#f9fafb", stroke=FRAME, rounded=True))
        self.shapes.append(Label(cx, y + 15, "answer", colour=FRAME))
        y += 30 + MARGIN
        y = self._legend(cx, y, width)
        return Picture(float(math.ceil(width)), float(math.ceil(y)), self.shapes)

    def _legend(self, cx: float, y: float, width: float) -> float:
        used = []
        for node in self.graph.walk():
            if not node.is_structure and node.name in self.library:
                category = self.library.get(node.name).category
                if category not in used:
                    used.append(category)
        if not used:
            return y
        x = MARGIN
        for category in used:
            self.shapes.append(Box(x, y, 14, 14, fill=CATEGORY_COLOURS.get(category, OTHER_COLOUR)))
            self.shapes.append(Label(x + 20, y + 7, category, 11, FRAME, anchor="start"))
            x += 34 + CHAR_W * 0.85 * len(category)
            if x > width - 80:
                x, y = MARGIN, y + 20
        return y + 14 + MARGIN


__all__ = ["Box", "Edge", "Label", "Picture", "save_workflow_picture", "workflow_picture"]
