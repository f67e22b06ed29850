"""load_tasks on hand-written records in each native schema, bad records, and the real data."""

from __future__ import annotations

import gzip
import json
import logging
import re
from pathlib import Path

import pytest

from flowsteer.tasks import Task, TaskFormatError, load_tasks, read_tasks, register_source
from flowsteer.tasks.sources import SOURCES, RecordError, doctest_asserts, last_boxed

DATA = Path(__file__).parent / "data"


def _write_jsonl(path: Path, records: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return path


def test_gsm8k_gold_is_the_number_after_hashes_without_commas():
    tasks = load_tasks("gsm8k", DATA / "gsm8k.jsonl")
    assert [t.answer for t in tasks] == ["7", "2400", "4.5"]
    assert all(t.kind == "math" and t.source == "gsm8k" for t in tasks)
    assert tasks[0].question.startswith("Tom has 3 apples")
    assert tasks[0].meta["solution"].endswith("#### 7")
    assert [t.id for t in tasks] == ["gsm8k/0", "gsm8k/1", "gsm8k/2"]


def test_math_gold_from_last_boxed_or_answer_field():
    tasks = load_tasks("math", DATA / "math.jsonl")
    assert [t.answer for t in tasks] == ["\\frac{3}{4}", "4", "2"]
    assert tasks[2].id == "test/algebra/1.json"
    assert tasks[0].meta["level"] == "Level 1"


def test_last_boxed_balances_nested_braces():
    assert last_boxed("so \\boxed{\\frac{a}{b^{2}}} done") == "\\frac{a}{b^{2}}"
    assert last_boxed("\\boxed{1} and \\fbox{2}") == "2"
    assert last_boxed("no box") is None
    assert last_boxed("\\boxed{unclosed") is None


@pytest.mark.parametrize("name", ["hotpotqa_hf.jsonl", "hotpotqa_original.json"])
def test_hotpotqa_both_schemas_give_question_and_context(name):
    (task,) = load_tasks("hotpotqa", DATA / name)
    assert task.kind == "qa"
    assert task.answer in {"yes", "Chief of Protocol"}
    titles = re.findall(r"^([^:\n]+):", task.context, re.MULTILINE)
    assert len(titles) == 2
    assert task.id.startswith("5a8")


def test_squad_v2_alternatives_and_unanswerable_gold():
    answerable, unanswerable, multi = load_tasks("squad_v2", DATA / "squad_v2.jsonl")
    assert answerable.golds == ("France",)
    assert unanswerable.answer == "" and unanswerable.meta["unanswerable"] is True
    assert multi.golds == ("10th and 11th centuries", "in the 10th and 11th centuries")
    assert "Normandy" in answerable.context


def test_mbpp_public_test_is_first_assert_and_hidden_tests_include_challenge():
    full, sanitized = load_tasks("mbpp", DATA / "mbpp.jsonl")
    assert full.entry_point == "remove_Occ"
    assert full.public_tests == ('assert remove_Occ("hello","l") == "heo"',)
    assert len(full.tests) == 5 and full.tests[0] == full.public_tests[0]
    assert full.public_tests[0] in full.question
    assert full.id == "mbpp/11"
    assert sanitized.entry_point == "square_perimeter"  # not "math" from math.isclose
    assert sanitized.setup_code == "import math"


def test_mbpp_reference_code_passes_its_hidden_tests():
    for task in load_tasks("mbpp", DATA / "mbpp.jsonl"):
        scope: dict = {}
        exec(task.setup_code + "\n" + task.answer, scope)
        for test in task.tests:
            exec(test, scope)


def test_humaneval_hidden_test_calls_check_and_public_tests_from_docstring():
    (task,) = load_tasks("humaneval", DATA / "humaneval.jsonl")
    assert task.entry_point == "add"
    assert task.tests[0].rstrip().endswith("check(add)")
    assert task.public_tests == ("assert add(2, 3) == 5", "assert add(-1, 1) == 0")
    scope: dict = {}
    exec(task.question + task.answer + task.tests[0], scope)  # the reference passes
    with pytest.raises(AssertionError):
        exec(task.question + "    return a - b\n" + task.tests[0], {})


def test_doctest_asserts_skip_examples_without_an_expected_line():
    prompt = '    >>> f(1) == 3\n    """\n    >>> g(2)\n    [1,\n'
    assert doctest_asserts(prompt) == ()


def test_gzip_and_parquet_load_like_jsonl(tmp_path):
    src = (DATA / "gsm8k.jsonl").read_bytes()
    gz = tmp_path / "gsm8k.jsonl.gz"
    gz.write_bytes(gzip.compress(src))
    import pandas as pd

    parquet = tmp_path / "gsm8k.parquet"
    pd.read_json(DATA / "gsm8k.jsonl", lines=True).to_parquet(parquet)
    expected = load_tasks("gsm8k", DATA / "gsm8k.jsonl")
    assert load_tasks("gsm8k", gz) == expected
    assert load_tasks("gsm8k", parquet) == expected


def test_directory_with_split_files_and_limit(tmp_path):
    _write_jsonl(tmp_path / "train.jsonl", [{"question": "q", "answer": "s\n#### 1"}] * 5)
    _write_jsonl(tmp_path / "test.jsonl", [{"question": "q", "answer": "s\n#### 2"}] * 3)
    tasks = load_tasks("gsm8k", tmp_path, split="test", limit=2)
    assert [t.id for t in tasks] == ["gsm8k/test/0", "gsm8k/test/1"]
    assert {t.answer for t in tasks} == {"2"}
    with pytest.raises(FileNotFoundError, match="exactly one data file for split 'dev'"):
        load_tasks("gsm8k", tmp_path, split="dev")


def test_bad_record_error_names_file_index_and_field(tmp_path):
    path = _write_jsonl(
        tmp_path / "bad.jsonl",
        [
            {"question": "ok", "answer": "x\n#### 3"},
            {"question": "no final answer", "answer": "just words"},
            {"question": "unparsable", "answer": "x\n#### three"},
        ],
    )
    with pytest.raises(TaskFormatError) as info:
        load_tasks("gsm8k", path)
    err = info.value
    assert (err.where, err.index, err.field) == (str(path), 1, "answer")
    assert str(path) in str(err) and "record 1" in str(err) and "'answer'" in str(err)


def test_skip_option_drops_bad_records_and_reports_how_many(tmp_path, caplog):
    path = _write_jsonl(
        tmp_path / "bad.jsonl",
        [
            {"question": "ok", "answer": "x\n#### 3"},
            {"question": None, "answer": "x\n#### 4"},
            {"question": "unparsable", "answer": "x\n#### three"},
            {"question": "ok too", "answer": "x\n#### 5"},
        ],
    )
    with caplog.at_level(logging.WARNING):
        result = read_tasks("gsm8k", path, on_error="skip")
    assert [t.answer for t in result.tasks] == ["3", "5"]
    assert [(e.index, e.field) for e in result.skipped] == [(1, "question"), (2, "answer")]
    assert "skipped 2 bad record(s)" in caplog.text
    assert len(load_tasks("gsm8k", path, on_error="skip")) == 2


def test_wrong_type_that_arrow_rejects_is_located(tmp_path):
    path = tmp_path / "mixed.jsonl"
    path.write_text(
        json.dumps({"question": "a", "answer": "x\n#### 1"})
        + "\n"
        + json.dumps({"question": "b", "answer": 5})
        + "\n"
    )
    with pytest.raises(TaskFormatError) as info:
        load_tasks("gsm8k", path)
    assert (info.value.index, info.value.field) == (1, "answer")


def test_wrong_type_in_a_list_field_is_located(tmp_path):
    record = json.loads((DATA / "mbpp.jsonl").read_text().splitlines()[0])
    path = _write_jsonl(tmp_path / "mbpp.jsonl", [{**record, "test_list": "assert f() == 1"}])
    with pytest.raises(TaskFormatError) as info:
        load_tasks("mbpp", path)
    assert info.value.field == "test_list" and info.value.index == 0


def test_invalid_json_line_is_located(tmp_path):
    path = tmp_path / "broken.jsonl"
    path.write_text('{"question": "a", "answer": "x\\n#### 1"}\n{"question": "b", \n')
    with pytest.raises(TaskFormatError, match="record 1: invalid JSON"):
        load_tasks("gsm8k", path)


def test_unknown_source_missing_file_and_bad_suffix(tmp_path):
    with pytest.raises(ValueError, match="unknown task source 'gsm9k'"):
        load_tasks("gsm9k", DATA / "gsm8k.jsonl")
    with pytest.raises(FileNotFoundError, match="no such dataset file"):
        load_tasks("gsm8k", tmp_path / "missing.jsonl")
    odd = tmp_path / "data.csv"
    odd.write_text("question,answer\n")
    with pytest.raises(TaskFormatError, match="unsupported file type"):
        load_tasks("gsm8k", odd)


def test_register_source_adds_a_users_dataset(tmp_path):
    def parse(record, task_id):
        if "q" not in record:
            raise RecordError("q", "missing")
        return Task(task_id, "trivia", "qa", record["q"], record["a"])

    register_source("trivia", "qa", parse)
    try:
        path = _write_jsonl(tmp_path / "t.jsonl", [{"q": "Capital of France?", "a": "Paris"}])
        (task,) = load_tasks("trivia", path)
        assert (task.question, task.answer, task.id) == ("Capital of France?", "Paris", "trivia/0")
    finally:
        del SOURCES["trivia"]


def test_task_dict_round_trip_and_kind_check():
    (task,) = load_tasks("humaneval", DATA / "humaneval.jsonl")
    assert Task.from_dict(json.loads(json.dumps(task.to_dict()))) == task
    with pytest.raises(ValueError, match="kind must be one of"):
        Task("x", "s", "poetry", "q", "a")


# --------------------------------------------------------------------------- real data


def test_real_gsm8k_test_split(shared_data):
    tasks = load_tasks("gsm8k", shared_data / "gsm8k" / "test.jsonl")
    assert len(tasks) == 1319
    assert all(re.fullmatch(r"-?\d+(\.\d+)?", t.answer) for t in tasks)
    assert tasks[0].answer == "18"
    assert len({t.id for t in tasks}) == 1319


def test_real_humaneval(shared_data):
    tasks = load_tasks("humaneval", shared_data / "humaneval" / "HumanEval.jsonl.gz")
    assert len(tasks) == 164
    assert all(t.entry_point and t.entry_point.isidentifier() for t in tasks)
    assert all(f"def {t.entry_point}" in t.question for t in tasks)
    assert [t.id for t in tasks[:2]] == ["HumanEval/0", "HumanEval/1"]
    # Every public (docstring) test holds for the reference solution, except the dataset's one
    # known-wrong example (HumanEval/47's median).
    failing = []
    for task in tasks:
        scope: dict = {}
        exec(task.question + task.answer, scope)
        for test in task.public_tests:
            try:
                exec(test, scope)
            except AssertionError:
                failing.append(task.id)
    assert failing == ["HumanEval/47"]
    assert sum(1 for t in tasks if t.public_tests) >= 60


def test_gsm8k_gold_drops_thousands_commas_and_a_final_period(tmp_path):
    path = _write_jsonl(tmp_path / "g.jsonl", [{"question": "q", "answer": "s\n#### 1,250."}])
    assert [t.answer for t in load_tasks("gsm8k", path)] == ["1250"]


def test_mbpp_entry_point_is_the_tested_function_not_a_helper(tmp_path):
    record = {
        "task_id": 900,
        "text": "Write a function to double the sum of a list.",
        "code": "def _total(xs):\n    return sum(xs)\n\ndef double_sum(xs):\n    return 2 * _total(xs)",
        "test_list": ["assert double_sum([1, 2]) == 6"],
    }
    (task,) = load_tasks("mbpp", _write_jsonl(tmp_path / "m.jsonl", [record]))
    assert task.entry_point == "double_sum"


def test_split_names_match_whole_file_stems(tmp_path):
    _write_jsonl(tmp_path / "test.jsonl", [{"question": "q", "answer": "s\n#### 1"}])
    _write_jsonl(tmp_path / "testmini.jsonl", [{"question": "q", "answer": "s\n#### 2"}])
    _write_jsonl(
        tmp_path / "train-00000-of-00001.jsonl", [{"question": "q", "answer": "s\n#### 3"}]
    )
    assert [t.answer for t in load_tasks("gsm8k", tmp_path, split="test")] == ["1"]
    assert [t.answer for t in load_tasks("gsm8k", tmp_path, split="testmini")] == ["2"]
    assert [t.answer for t in load_tasks("gsm8k", tmp_path, split="train")] == ["3"]


def test_humaneval_entry_point_must_be_an_identifier(tmp_path):
    record = json.loads((DATA / "humaneval.jsonl").read_text().splitlines()[0])
    path = _write_jsonl(tmp_path / "he.jsonl", [{**record, "entry_point": "add numbers"}])
    with pytest.raises(TaskFormatError) as info:
        load_tasks("humaneval", path)
    assert (info.value.index, info.value.field) == (0, "entry_point")


def test_squad_v2_whitespace_only_answers_are_unanswerable(tmp_path):
    record = {"id": "s1", "question": "q?", "context": "c.", "answers": {"text": [" "]}}
    (task,) = load_tasks("squad_v2", _write_jsonl(tmp_path / "s.jsonl", [record]))
    assert (task.answer, task.alternatives, task.meta["unanswerable"]) == ("", (), True)
