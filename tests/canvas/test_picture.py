"""Workflow pictures: valid SVG and PNG for every structure kind, and a layout without overlaps."""

from __future__ import annotations

import random
import xml.etree.ElementTree as ET
from itertools import combinations

import pytest

from flowsteer.canvas.graph import WorkflowGraph
from flowsteer.canvas.picture import (
    CATEGORY_COLOURS,
    OTHER_COLOUR,
    Box,
    Label,
    save_workflow_picture,
    workflow_picture,
)
from flowsteer.operators.library import OperatorLibrary

SVG = "{http://www.w3.org/2000/svg}"
LIBRARY = OperatorLibrary.default()


def every_kind() -> WorkflowGraph:
    g = WorkflowGraph()
    g.add_operator("Plan")
    g.add_structure("parallel", ["Programmer", "Custom", "AnswerGenerate"])
    g.add_operator("ScEnsemble")
    g.add_structure("conditional", ["Verify", "Revise"])  # pass: done
    g.add_structure("loop", ["Review", "Revise"], count=3)
    g.add_structure("conditional", ["Test", "Revise", "Format"])  # pass: an operator
    g.add_operator("Format")
    return g


def texts(svg: str) -> list[str]:
    return [t.text or "" for t in ET.fromstring(svg).iter(f"{SVG}text")]


def test_svg_is_valid_and_shows_every_node_and_branch():
    g = every_kind()
    svg = workflow_picture(g).to_svg()
    root = ET.fromstring(svg)  # well-formed XML
    assert root.tag == f"{SVG}svg"
    shown = texts(svg)
    for node in g.walk():
        if node.is_structure:
            continue
        assert node.name in shown and node.id in shown
    for word in ("parallel", "conditional", "loop ×3", "×3", "fail", "pass", "done"):
        assert word in shown, word
    assert shown.count("fail") == 2 and shown.count("pass") == 2
    assert "question" in shown and "answer" in shown


def test_operators_are_coloured_by_category():
    g = every_kind()
    picture = workflow_picture(g)
    boxes = [s for s in picture.shapes if isinstance(s, Box)]
    labels = [s for s in picture.shapes if isinstance(s, Label)]
    for node in g.operator_nodes():
        label = next(lab for lab in labels if lab.text == node.id)
        box = next(
            b
            for b in boxes
            if b.x <= label.x <= b.x + b.w and b.y <= label.y <= b.y + b.h and not b.dashed
        )
        assert box.fill == CATEGORY_COLOURS[LIBRARY.get(node.name).category], node.name


def test_an_operator_outside_the_library_is_drawn_uncoloured():
    g = WorkflowGraph()
    g.add_operator("Plan")
    g.add_operator("Summarise")
    picture = workflow_picture(g, LIBRARY.restrict(["Plan"]))
    fills = [
        s.fill for s in picture.shapes if isinstance(s, Box) and not s.dashed and not s.rounded
    ]
    assert OTHER_COLOUR in fills


def test_png_is_a_real_image_of_the_layout_size(tmp_path):
    import matplotlib.image as mpimg

    g = every_kind()
    picture = workflow_picture(g)
    path = save_workflow_picture(g, tmp_path / "wf.png")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    image = mpimg.imread(path)
    assert image.shape[:2] == (round(picture.height), round(picture.width))
    assert image[..., :3].std() > 0.05  # not blank


def test_svg_file_and_bad_suffix(tmp_path):
    g = every_kind()
    path = save_workflow_picture(g, tmp_path / "wf.svg")
    assert ET.parse(path).getroot().tag == f"{SVG}svg"
    with pytest.raises(ValueError, match=r"wf\.jpg.*\.svg or \.png"):
        save_workflow_picture(g, tmp_path / "wf.jpg")


def test_empty_workflow_draws():
    shown = texts(workflow_picture(WorkflowGraph()).to_svg())
    assert "(empty workflow)" in shown


def _random_graph(rng: random.Random) -> WorkflowGraph:
    names = LIBRARY.names
    checkers = LIBRARY.checkers
    g = WorkflowGraph()
    for _ in range(rng.randint(1, 7)):
        kind = rng.choice(["op", "op", "parallel", "conditional", "loop"])
        if kind == "op":
            g.add_operator(rng.choice(names))
        elif kind == "parallel":
            g.add_structure("parallel", rng.choices(names, k=rng.randint(2, 4)))
        elif kind == "conditional":
            arms = rng.choices(names, k=rng.randint(1, 2))
            g.add_structure("conditional", [rng.choice(checkers), *arms])
        else:
            g.add_structure(
                "loop", rng.choices(names, k=rng.randint(1, 3)), count=rng.randint(1, 5)
            )
    return g


@pytest.mark.parametrize("seed", range(25))
def test_operator_boxes_never_overlap_and_stay_inside_the_picture(seed):
    picture = workflow_picture(_random_graph(random.Random(seed)))
    boxes = [s for s in picture.shapes if isinstance(s, Box) and not s.dashed]
    for b in boxes:
        assert b.x >= 0 and b.x + b.w <= picture.width and b.y >= 0 and b.y + b.h <= picture.height
    for a, b in combinations(boxes, 2):
        apart = a.x + a.w <= b.x or b.x + b.w <= a.x or a.y + a.h <= b.y or b.y + b.h <= a.y
        assert apart, (a, b)
    frames = [s for s in picture.shapes if isinstance(s, Box) and s.dashed]
    for a, b in combinations(frames, 2):  # structures are stacked, never on top of each other
        assert a.y + a.h <= b.y or b.y + b.h <= a.y
