"""The operator library: the twelve defaults, files, import-path extension, restriction, lookup."""

from __future__ import annotations

import json
import sys
import textwrap

import pytest
import yaml

from flowsteer.operators import (
    CATEGORIES,
    DEFAULT_LIBRARY_PATH,
    OperatorLibrary,
    OperatorSpec,
    UnknownOperatorError,
)

TWELVE = ["Plan", "Decompose", "Programmer", "Custom", "AnswerGenerate", "Test", "Review",
          "Verify", "Revise", "ScEnsemble", "Aggregate", "Format"]  # fmt: skip


def test_default_library_matches_the_design():
    lib = OperatorLibrary.default()
    assert sorted(lib.names) == sorted(TWELVE)
    assert lib.checkers == ["Test", "Review", "Verify"]
    assert {s.category for s in lib} == set(CATEGORIES)
    assert [s.name for s in lib.structures] == ["parallel", "conditional", "loop"]
    assert all(s.description and s.default_prompt and s.inputs and s.outputs for s in lib)


def test_describe_lists_every_operator_and_structure():
    d_lib = OperatorLibrary.default().describe()
    for name in [*TWELVE, "parallel", "conditional", "loop"]:
        assert f"- {name} " in d_lib
    assert d_lib == OperatorLibrary.default().describe()  # deterministic


def test_case_insensitive_lookup_and_did_you_mean():
    lib = OperatorLibrary.default()
    assert lib.get("  scensemble ").name == "ScEnsemble"
    assert "verify" in lib
    with pytest.raises(UnknownOperatorError, match="did you mean Programmer"):
        lib.get("Programer")
    with pytest.raises(UnknownOperatorError, match="operators are Plan"):
        lib.get("Zzzzzz")
    assert lib.find("nope") is None


def test_yaml_and_json_files_round_trip(tmp_path):
    lib = OperatorLibrary.default()
    (tmp_path / "lib.json").write_text(json.dumps(lib.to_dict()))
    (tmp_path / "lib.yaml").write_text(yaml.safe_dump(lib.to_dict()))
    for name in ("lib.json", "lib.yaml"):
        again = OperatorLibrary.from_file(tmp_path / name)
        assert again.to_dict() == lib.to_dict()
        assert again.describe() == lib.describe()


def test_bad_library_files_say_what_is_wrong(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("operators:\n  - name: X\n    category: magic\n    description: d\n")
    with pytest.raises(ValueError, match="category must be one of"):
        OperatorLibrary.from_file(bad)
    bad.write_text(
        "operators:\n  - name: X\n    category: solving\n    description: d\n    colour: red\n"
    )
    with pytest.raises(ValueError, match="unknown keys"):
        OperatorLibrary.from_file(bad)
    bad.write_text("ops: []")
    with pytest.raises(ValueError, match="'operators' list"):
        OperatorLibrary.from_file(bad)
    bad.write_text("operators: [")
    with pytest.raises(ValueError, match="cannot read"):
        OperatorLibrary.from_file(bad)


def test_extend_by_spec_and_by_import_path(tmp_path, monkeypatch):
    (tmp_path / "my_ops.py").write_text(
        textwrap.dedent(
            """
            from flowsteer.operators import OperatorSpec
            SQL = OperatorSpec("Sql", "solving", "Writes and runs SQL.")
            class Critic:
                spec = OperatorSpec("Critic", "verification", "A harsh reviewer.")
            """
        )
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "my_ops", raising=False)
    base = OperatorLibrary.default()
    lib = base.extend("my_ops:SQL", "my_ops:Critic", OperatorSpec("Echo", "solving", "Echoes."))
    assert lib.names[-3:] == ["Sql", "Critic", "Echo"]
    assert lib.get("critic").impl == "my_ops:Critic"  # the class is the implementation
    assert lib.get("sql").impl is None
    assert "Critic" in lib.checkers
    assert len(base) == 12  # extend returns a new library
    with pytest.raises(ValueError, match="already exists"):
        lib.extend(OperatorSpec("Plan", "planning", "again"))
    assert (
        lib.extend(OperatorSpec("Plan", "planning", "again"), replace=True).get("Plan").description
        == "again"
    )
    with pytest.raises(ValueError, match="cannot import"):
        base.extend("my_ops:Missing")


def test_restrict_keeps_order_and_optionally_structures():
    lib = OperatorLibrary.default().restrict(["format", "Plan"], structures=["loop"])
    assert lib.names == ["Format", "Plan"]
    assert [s.name for s in lib.structures] == ["loop"]
    with pytest.raises(UnknownOperatorError):
        OperatorLibrary.default().restrict(["Plann"])


def test_spec_validation():
    with pytest.raises(ValueError):
        OperatorSpec("bad name", "solving", "d")
    spec = OperatorSpec("X", "verification", "d", inputs=["a"], outputs=["b"])
    assert spec.is_checker and spec.inputs == ("a",)
    assert OperatorSpec.from_dict(spec.to_dict()) == spec
    assert DEFAULT_LIBRARY_PATH.exists()


def test_restrict_to_an_unknown_structure_names_it():
    with pytest.raises(UnknownOperatorError, match="unknown structure 'tree'"):
        OperatorLibrary.default().restrict(["Plan"], ["parallel", "tree"])


def test_describe_lists_each_operator_once_grouped_by_category():
    lib = OperatorLibrary.default()
    operators_part = lib.describe().split("\nStructures:")[0]
    lines = [ln for ln in operators_part.splitlines() if ln.startswith("- ")]
    assert sorted(ln.split()[1] for ln in lines) == sorted(lib.names)
    categories = [ln.split("[")[1].split("]")[0] for ln in lines]
    assert categories == sorted(categories, key=CATEGORIES.index)
