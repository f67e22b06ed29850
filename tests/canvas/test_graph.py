"""WorkflowGraph: DSL, ids, validation, editing, copies, Mermaid and JSON."""

from __future__ import annotations

import pytest

from flowsteer.canvas import GraphEditError, GraphFormatError, WorkflowGraph

TARGET_DSL = "Plan -> [Programmer, Custom] -> ScEnsemble -> Verify ? Revise : done -> Format"


def build_target() -> WorkflowGraph:
    g = WorkflowGraph()
    g.add_operator("Plan", prompt="plan it")
    g.add_structure("parallel", ["Programmer", "Custom"])
    g.add_operator("ScEnsemble")
    g.add_structure("conditional", ["Verify", "Revise"])
    g.add_operator("Format")
    return g


def test_dsl_of_the_reference_workflow_and_loops():
    g = build_target()
    assert g.to_dsl() == TARGET_DSL
    g.add_structure("loop", ["Review", "Revise"], count=3)
    assert g.to_dsl().endswith("-> Format -> (Review -> Revise) * 3")
    assert WorkflowGraph().to_dsl() == "(empty)"
    h = WorkflowGraph()
    h.add_structure("conditional", ["Test", "Revise", "Custom"])
    assert h.to_dsl() == "Test ? Revise : Custom"


def test_execution_order_views():
    g = build_target()
    assert g.operator_names() == [
        "Plan",
        "Programmer",
        "Custom",
        "ScEnsemble",
        "Verify",
        "Revise",
        "Format",
    ]
    assert g.structure_kinds() == ["parallel", "conditional"]
    assert [n.id for n in g.top_level()] == ["n1", "n2", "n5", "n6", "n9"]
    assert [n.name for n in g.children("n2")] == ["Programmer", "Custom"]
    cond = g.node("n6")
    assert (cond.condition, cond.on_fail, cond.on_pass) == ("n7", "n8", None)
    assert [n.id for n in g.walk()] == [f"n{i}" for i in range(1, 10)]
    assert g.parent("n3") == "n2" and g.parent("n1") is None


def test_ids_are_never_reused():
    g = WorkflowGraph()
    a = g.add_operator("Plan")
    g.remove(a)
    b = g.add_operator("Plan")
    assert (a, b) == ("n1", "n2")
    s = g.add_structure("parallel", ["Custom", "Programmer"])
    old = g.node(s).children
    new = g.set_children(s, ["Custom", "AnswerGenerate"])
    assert not set(old) & set(new)


def test_validation_codes(library):
    def codes(g):
        return [i.code for i in g.validate(library)]

    g = WorkflowGraph()
    g.add_operator("Plann")
    assert codes(g) == ["unknown_operator"]
    assert "did you mean Plan" in g.validate(library)[0].message
    g = WorkflowGraph()
    g.add_structure("parallel", ["Custom"])
    assert codes(g) == ["parallel_too_small"]
    g = WorkflowGraph()
    g.add_operator("ScEnsemble")
    assert codes(g) == ["ensemble_without_candidates"]
    g = WorkflowGraph()
    g.add_structure("parallel", ["Custom", "ScEnsemble"])
    assert codes(g) == ["ensemble_without_candidates"]
    g = WorkflowGraph()
    g.add_structure("loop", ["Review", "Revise"], count=9)
    assert codes(g) == ["loop_count_range"]
    g = WorkflowGraph()
    g.add_structure("conditional", ["Custom", "Revise"])
    assert codes(g) == ["condition_not_checker"]
    assert codes(build_target()) == []
    assert build_target().validate() == []  # structure-only without a library


def test_edits_that_cannot_be_expressed_raise_clearly():
    g = build_target()
    with pytest.raises(GraphEditError, match="condition of conditional n6"):
        g.remove("n7")
    with pytest.raises(GraphEditError, match="no node 'n99'; nodes are n1 Plan"):
        g.node("n99")
    with pytest.raises(GraphEditError, match="has no prompt"):
        g.set_prompt("n2", "x")
    with pytest.raises(GraphEditError, match="position 9 is out of range"):
        g.add_operator("Plan", index=8)
    g.set_branch("n6", "on_pass", "Custom")
    assert g.to_dsl().endswith("Verify ? Revise : Custom -> Format")
    g.remove(g.node("n6").on_pass)
    assert g.to_dsl() == TARGET_DSL


def test_copy_is_independent_and_equal():
    g = build_target()
    h = g.copy()
    assert h == g
    h.remove("n2")
    h.set_prompt("n1", "other")
    assert g.to_dsl() == TARGET_DSL and g.node("n1").prompt == "plan it"
    assert h != g


def test_json_round_trip_with_prompts():
    g = build_target()
    g.set_prompt("n3", "use sympy — ünïcode")
    g.add_structure("loop", ["Review", "Revise"], count=2)
    g.remove("n9")
    again = WorkflowGraph.from_json(g.to_json(indent=2))
    assert again == g
    assert again.node("n3").prompt == "use sympy — ünïcode"
    assert again.next_id == g.next_id  # ids stay unique after a reload
    assert again.to_dsl() == g.to_dsl()


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ("{not json", "does not parse"),
        ("[]", "JSON object"),
        ('{"steps": 3}', "'steps' list"),
        ('{"steps": [{"operator": "Plan"}]}', "steps[0]: 'id'"),
        ('{"steps": [{"id": "n1", "operator": "Plan"}, {"id": "n1", "operator": "X"}]}', "duplicate id"),
        ('{"steps": [{"id": "n1", "structure": "tree", "children": []}]}', "unknown structure"),
        ('{"steps": [{"id": "n1", "structure": "loop", "children": []}]}', "integer 'count'"),
        ('{"steps": [{"id": "n1", "structure": "parallel", "children": [{"id": "n2"}]}]}', "steps[0].children[0]"),
        ('{"steps": [{"id": "n5", "operator": "Plan"}], "next_id": 2}', "next_id"),
        ('{"version": 9, "steps": []}', "version"),
    ],
)  # fmt: skip
def test_from_json_errors_are_located(text, needle):
    with pytest.raises(GraphFormatError, match=None) as info:
        WorkflowGraph.from_json(text)
    assert needle in str(info.value)


def test_mermaid_and_networkx_views(invariants):
    g = build_target()
    g.add_structure("loop", ["Review", "Revise"], count=3)
    m = g.to_mermaid()
    assert m.startswith("flowchart LR")
    assert 'subgraph n2["n2 parallel"]' in m and "n7 -- fail --> n8" in m
    assert "-. repeat .->" in m and "n1 --> n2" in m
    invariants(g)
    nxg = g.to_networkx()
    assert nxg.edges["n2", "n3"] == {"kind": "child", "order": 0}
    assert nxg.edges["n1", "n2"] == {"kind": "next"}


@pytest.mark.parametrize(("count", "valid"), [(0, False), (1, True), (5, True), (6, False)])
def test_loop_count_bounds_are_inclusive(library, count, valid):
    g = WorkflowGraph()
    g.add_structure("loop", ["Review", "Revise"], count=count)
    assert [i.code for i in g.validate(library)] == ([] if valid else ["loop_count_range"])


def test_ensemble_inside_a_later_parallel_still_has_nothing_to_choose_from(library):
    g = WorkflowGraph()
    g.add_structure("parallel", ["Programmer", "Custom"])
    g.add_structure("parallel", ["Custom", "ScEnsemble"])
    assert [(i.code, i.node_id) for i in g.validate(library)] == [
        ("ensemble_without_candidates", "n6")
    ]


def test_conditional_fail_branch_cannot_be_removed_and_done_drops_on_pass(invariants):
    g = build_target()
    with pytest.raises(GraphEditError, match="fail branch of conditional n6"):
        g.remove("n8")
    assert g.to_dsl() == TARGET_DSL
    new = g.set_branch("n6", "on_pass", "Custom")
    assert g.set_branch("n6", "on_pass", "done") is None
    assert g.node("n6").children == ("n7", "n8") and new not in g
    assert g.to_dsl() == TARGET_DSL
    invariants(g)


def test_changing_an_operator_keeps_the_id_and_resets_the_prompt():
    g = build_target()
    g.set_operator("n1", "Decompose")
    assert (g.node("n1").name, g.node("n1").prompt) == ("Decompose", "")


def test_a_reloaded_graph_keeps_structure_membership(invariants):
    g = build_target()
    g.set_branch("n6", "on_pass", "Custom")
    again = WorkflowGraph.from_json(g.to_json())
    assert [again.parent(c) for c in ("n3", "n4", "n7", "n8", "n10")] == ["n2"] * 2 + ["n6"] * 3
    assert again.step_index("n10") == 3
    assert again.remove("n10") == ["n10"]
    assert again.to_dsl() == TARGET_DSL
    invariants(again)
