"""`Task` rejects missing and ill-typed fields itself; loaders report them per record (8.17)."""

from __future__ import annotations

import pytest

from flowsteer.tasks import RecordError, Task, TaskFieldError, TaskFormatError, load_tasks
from flowsteer.tasks.sources import SOURCES, register_source


@pytest.mark.parametrize(
    ("kwargs", "field", "problem"),
    [
        ({"question": None}, "question", "missing"),
        ({"question": "   "}, "question", "empty"),
        ({"question": 7}, "question", "expected a string, got int"),
        ({"answer": None}, "answer", "missing"),
        ({"answer": 4}, "answer", "expected a string, got int"),
        ({"id": None}, "id", "missing"),
        ({"source": ""}, "source", "empty"),
        ({"kind": "poetry"}, "kind", "kind must be one of"),
        ({"context": None}, "context", "missing"),
        ({"alternatives": "Paris"}, "alternatives", "expected a tuple of strings"),
        ({"tests": ("assert f()", 3)}, "tests[1]", "expected a string, got int"),
        ({"entry_point": 5}, "entry_point", "expected a string"),
        ({"meta": []}, "meta", "expected a dict"),
    ],
)
def test_a_bad_field_is_named(kwargs, field, problem):
    base = {"id": "t/0", "source": "trivia", "kind": "qa", "question": "Q?", "answer": "A"}
    with pytest.raises(TaskFieldError, match=problem) as info:
        Task(**{**base, **kwargs})
    assert info.value.field == field and f"field {field!r}" in str(info.value)


def test_valid_tasks_still_build_and_lists_become_tuples():
    t = Task("t/0", "squad_v2", "qa", "Q?", "", alternatives=["a", "b"], tests=[])
    assert t.alternatives == ("a", "b") and t.tests == () and t.answer == ""
    assert hash(t) == hash(Task("t/0", "squad_v2", "qa", "Q?", "", alternatives=("a", "b")))


@pytest.fixture
def trivia():
    def parse(record, task_id):  # the README's parser: no field checks of its own
        return Task(task_id, "trivia", "qa", record["q"], record["a"])

    register_source("trivia_test", "qa", parse)
    yield
    SOURCES.pop("trivia_test", None)


def test_a_record_without_a_column_datasets_filled_with_none_is_reported(tmp_path, trivia):
    f = tmp_path / "trivia.jsonl"
    f.write_text('{"q": "Capital of France?", "a": "Paris"}\n{"a": "no question here"}\n')
    with pytest.raises(TaskFormatError, match=r"record 1: field 'question': missing") as info:
        load_tasks("trivia_test", f)
    assert info.value.index == 1 and str(f) in str(info.value)
    tasks = load_tasks("trivia_test", f, on_error="skip")
    assert [t.question for t in tasks] == ["Capital of France?"]


def test_a_column_no_record_has_is_reported_not_a_traceback(tmp_path, trivia):
    f = tmp_path / "trivia.jsonl"
    f.write_text('{"question": "Capital of France?", "a": "Paris"}\n')
    with pytest.raises(TaskFormatError, match=r"record 0: field 'q': missing"):
        load_tasks("trivia_test", f)


def test_record_errors_still_work(tmp_path):
    def parse(record, task_id):
        raise RecordError("q", "too short")

    register_source("always_bad", "qa", parse)
    try:
        f = tmp_path / "x.jsonl"
        f.write_text('{"q": "x"}\n')
        with pytest.raises(TaskFormatError, match="record 0: field 'q': too short"):
            load_tasks("always_bad", f)
    finally:
        SOURCES.pop("always_bad", None)


@pytest.mark.parametrize(
    ("changes", "field", "problem"),
    [
        ({"tests": "assert f()"}, "tests", "expected a tuple of strings"),  # not 10 one-char tests
        ({"alternatives": None}, "alternatives", "expected a tuple of strings"),
        ({"extra": 1}, "extra", "unknown field"),
        ({"kind": None}, "kind", "kind must be one of"),
        ({"entry_point": " "}, "entry_point", "empty"),
    ],
)
def test_from_dict_names_a_bad_field_and_never_splits_a_string(changes, field, problem):
    data = Task("t/0", "mbpp", "code", "Q?", "", entry_point="f").to_dict()
    with pytest.raises(TaskFieldError, match=problem) as info:
        Task.from_dict({**data, **changes})
    assert info.value.field == field


def test_from_dict_names_a_missing_required_field():
    data = Task("t/0", "trivia", "qa", "Q?", "A").to_dict()
    del data["kind"]
    with pytest.raises(TaskFieldError, match="'kind': missing"):
        Task.from_dict(data)
