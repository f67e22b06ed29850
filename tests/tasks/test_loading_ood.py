"""load_tasks on hand-written records of the six evaluation sources, and their malformed forms."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from flowsteer.tasks import SOURCES, TaskFormatError, load_tasks, read_tasks
from flowsteer.tasks.math_qa import parse_options
from flowsteer.tasks.sources import RecordError

DATA = Path(__file__).parent / "data"
OOD = ("triviaqa", "nq_open", "math_qa", "aime", "apps", "ds1000")


def _write_jsonl(path: Path, records: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return path


def _first(name: str) -> dict:
    return json.loads((DATA / f"{name}.jsonl").read_text().splitlines()[0])


def _error(tmp_path: Path, source: str, record: dict) -> TaskFormatError:
    path = _write_jsonl(tmp_path / f"{source}.jsonl", [record])
    with pytest.raises(TaskFormatError) as info:
        load_tasks(source, path)
    assert info.value.where == str(path) and info.value.index == 0
    return info.value


def test_all_twelve_sources_are_registered_with_their_kinds():
    kinds = {name: source.kind for name, source in SOURCES.items()}
    assert {k: kinds[k] for k in OOD} == {
        "triviaqa": "qa", "nq_open": "qa", "math_qa": "math", "aime": "math",
        "apps": "code", "ds1000": "code",
    }  # fmt: skip
    assert {"gsm8k", "math", "hotpotqa", "squad_v2", "mbpp", "humaneval"} <= set(kinds)


# --------------------------------------------------------------------------- TriviaQA


def test_triviaqa_golds_are_value_and_normalized_aliases_with_context():
    rc, nocontext, raw_aliases = load_tasks("triviaqa", DATA / "triviaqa.jsonl")
    assert (rc.id, rc.kind, rc.answer) == ("tc_33", "qa", "Sunset Boulevard")
    assert rc.golds == (
        "Sunset Boulevard", "sunset blvd", "sunset boulevard", "sunset bulevard",
        "west sunset boulevard",
    )  # fmt: skip
    assert rc.context.startswith("Andrew Lloyd Webber: Andrew Lloyd Webber, Baron")
    assert "Sunset Boulevard (musical): Sunset Boulevard is a musical" in rc.context
    assert nocontext.context == "" and "ross bagdasarian sr" in nocontext.golds
    assert raw_aliases.golds == ("Chile", "Republic of Chile")  # no normalized_aliases: raw ones
    assert rc.meta["question_source"] == "http://www.quizzing.co.uk/"


def test_triviaqa_context_is_capped():
    from flowsteer.tasks.open_qa import MAX_TRIVIAQA_CONTEXT_CHARS, parse_triviaqa

    record = _first("triviaqa")
    record["entity_pages"]["wiki_context"] = ["x" * (3 * MAX_TRIVIAQA_CONTEXT_CHARS)]
    assert len(parse_triviaqa(record, "t").context) == MAX_TRIVIAQA_CONTEXT_CHARS


@pytest.mark.parametrize(
    ("change", "field"),
    [
        (lambda r: r.pop("answer"), "answer"),
        (lambda r: r["answer"].pop("value"), "answer.value"),
        (lambda r: r["answer"].update(aliases="Sunset Blvd"), "answer.aliases"),
        (lambda r: r.update(question=7), "question"),
        (lambda r: r.update(entity_pages=["a page"]), "entity_pages"),
    ],
)
def test_triviaqa_malformed_records_are_located(tmp_path, change, field):
    record = _first("triviaqa")
    change(record)
    assert _error(tmp_path, "triviaqa", record).field == field


# --------------------------------------------------------------------------- NQ-open


def test_nq_open_answers_are_the_golds():
    first, second = load_tasks("nq_open", DATA / "nq_open.jsonl")
    assert (first.id, first.kind, first.golds) == ("nq_open/0", "qa", ("Arlington, Texas",))
    assert second.golds == ("14 December 1972 UTC", "December 1972")


@pytest.mark.parametrize(
    ("record", "field"),
    [
        ({"question": "who?"}, "answer"),
        ({"question": "who?", "answer": "Ada"}, "answer"),
        ({"question": "who?", "answer": [" "]}, "answer"),
        ({"answer": ["Ada"]}, "question"),
    ],
)
def test_nq_open_malformed_records_are_located(tmp_path, record, field):
    assert _error(tmp_path, "nq_open", record).field == field


# --------------------------------------------------------------------------- MathQA


def test_math_qa_shows_the_options_and_gold_is_the_letter():
    first, second, listed = load_tasks("math_qa", DATA / "math_qa.jsonl")
    assert (first.kind, first.answer, first.alternatives) == ("math", "a", ("rs . 400",))
    assert "Options:\na) rs . 400\nb) rs . 300\n" in first.question
    assert first.question.endswith("answer with its letter.")
    assert (second.answer, second.alternatives) == ("d", ("240",))
    assert (listed.answer, listed.alternatives) == ("b", ("270",))  # options as a list
    assert first.meta["category"] == "gain" and first.meta["options"]["e"] == "none of these"


def test_parse_options_table():
    assert parse_options("a ) 1 , 200 , b ) 5 : 3 , c ) 1 / 3") == {
        "a": "1 , 200",
        "b": "5 : 3",
        "c": "1 / 3",
    }
    with pytest.raises(RecordError, match="options"):
        parse_options("b ) 3 , a ) 4")
    with pytest.raises(RecordError, match="options"):
        parse_options("38 or 27")


@pytest.mark.parametrize(
    ("change", "field"),
    [
        (lambda r: r.pop("Problem"), "Problem"),
        (lambda r: r.update(correct="f"), "correct"),
        (lambda r: r.update(correct=1), "correct"),
        (lambda r: r.update(options="38, 27"), "options"),
        (lambda r: r.pop("options"), "options"),
    ],
)
def test_math_qa_malformed_records_are_located(tmp_path, change, field):
    record = _first("math_qa")
    change(record)
    assert _error(tmp_path, "math_qa", record).field == field


# --------------------------------------------------------------------------- AIME


def test_aime_gold_is_the_integer_and_id_comes_from_the_record(tmp_path):
    tasks = load_tasks("aime", DATA / "aime.jsonl")
    assert [(t.id, t.answer, t.kind) for t in tasks] == [
        ("aime/2025-I-1", "70", "math"), ("aime/2025-I-4", "117", "math"),
        ("aime/2025-II-9", "149", "math"),
    ]  # fmt: skip
    assert tasks[0].meta["solution"].startswith("$17_b")
    path = _write_jsonl(tmp_path / "a.jsonl", [{"problem": "p", "answer": "033"}])
    assert [(t.id, t.answer) for t in load_tasks("aime", path)] == [("aime/0", "33")]


@pytest.mark.parametrize(
    ("record", "field"),
    [
        ({"problem": "p"}, "answer"),
        ({"problem": "p", "answer": "7/2"}, "answer"),
        ({"problem": "p", "answer": 1000}, "answer"),
        ({"problem": "p", "answer": [3]}, "answer"),
        ({"answer": 3}, "problem"),
    ],
)
def test_aime_malformed_records_are_located(tmp_path, record, field):
    assert _error(tmp_path, "aime", record).field == field


# --------------------------------------------------------------------------- APPS


def test_apps_stdin_and_call_based_problems():
    stdin, _ratio, two_sum, root, min_max = load_tasks("apps", DATA / "apps.jsonl")
    assert (stdin.id, stdin.kind, stdin.entry_point) == ("apps/4001", "code", None)
    assert "reads the input from standard input" in stdin.question
    assert "called with" not in stdin.question
    assert json.loads(stdin.tests[0]) == {"input": "3\n1 2 3\n", "output": "6\n"}
    assert len(stdin.tests) == 3
    # Public: only the cases the statement shows (input and output both in its text).
    assert stdin.public_tests == stdin.tests[:1] and _ratio.public_tests == ()
    assert two_sum.public_tests == two_sum.tests[:1] and min_max.public_tests == ()
    assert root.public_tests == root.tests[:2]  # 16 -> 7 and 942 -> 6; 132189 and 0 hidden
    assert stdin.answer.startswith("n = int(input())")
    assert two_sum.entry_point == "twoSum" and two_sum.meta["call_based"] is True
    assert "function `twoSum` is called" in two_sum.question
    assert "standard input" not in two_sum.question
    assert "```python\nclass Solution:\n    def twoSum(self" in two_sum.question
    assert json.loads(two_sum.tests[1]) == {"input": [[3, 2, 4], 6], "output": [[1, 2]]}
    assert root.meta["difficulty"] == "introductory" and min_max.entry_point == "min_max"


@pytest.mark.parametrize(
    ("change", "field"),
    [
        (lambda r: r.pop("input_output"), "input_output"),
        (lambda r: r.update(input_output=""), "input_output"),
        (lambda r: r.update(input_output="{not json"), "input_output"),
        (
            lambda r: r.update(input_output=json.dumps({"inputs": ["1\n"], "outputs": []})),
            "input_output",
        ),
        (
            lambda r: r.update(input_output=json.dumps({"inputs": "1", "outputs": "1"})),
            "input_output",
        ),
        (lambda r: r.update(solutions=json.dumps([1, 2])), "solutions"),
        (lambda r: r.update(question=None), "question"),
    ],
)
def test_apps_malformed_records_are_located(tmp_path, change, field):
    record = _first("apps")
    change(record)
    assert _error(tmp_path, "apps", record).field == field


def test_apps_fn_name_must_be_an_identifier(tmp_path):
    record = _first("apps")
    record["input_output"] = json.dumps({"fn_name": "two sum", "inputs": [[1]], "outputs": [[1]]})
    err = _error(tmp_path, "apps", record)
    assert err.field == "input_output" and "identifier" in str(err)


# --------------------------------------------------------------------------- DS-1000


def test_ds1000_question_asks_for_the_gap_and_tests_hold_the_official_program():
    pandas, numpy, function, tf = load_tasks("ds1000", DATA / "ds1000.jsonl")
    assert (pandas.id, pandas.kind, pandas.entry_point) == ("ds1000/0", "code", None)
    assert pandas.question.startswith("Problem:\nI have the following DataFrame:")
    assert "BEGIN SOLUTION" in pandas.question
    assert "Write only the code that goes where the solution belongs" in pandas.question
    assert pandas.answer == "result = df.iloc[List]\n"
    (program,) = pandas.tests
    assert program.endswith("test_execution(code)\n") and "test_string(code)" not in program
    assert numpy.tests[0].endswith("test_execution(code)\ntest_string(code)\n")
    assert pandas.meta == {
        "library": "Pandas", "perturbation_type": "Origin", "perturbation_origin_id": 0,
    }  # fmt: skip
    assert function.answer.startswith("    result = s.value_counts()")
    assert tf.meta["library"] == "Tensorflow"


@pytest.mark.parametrize(
    ("change", "field"),
    [
        (lambda r: r.pop("code_context"), "code_context"),
        (lambda r: r.update(code_context="def exec_test(r, a):\n    return 1\n"), "code_context"),
        (lambda r: r.update(metadata="Pandas"), "metadata"),
        (lambda r: r["metadata"].pop("library"), "metadata.library"),
        (lambda r: r["metadata"].pop("problem_id"), "metadata.problem_id"),
        (lambda r: r.update(prompt=["Problem"]), "prompt"),
    ],
)
def test_ds1000_malformed_records_are_located(tmp_path, change, field):
    record = _first("ds1000")
    change(record)
    assert _error(tmp_path, "ds1000", record).field == field


# --------------------------------------------------------------------------- all six


@pytest.mark.parametrize("source", OOD)
def test_skip_mode_keeps_good_records_and_counts_bad_ones(tmp_path, source):
    good = json.loads((DATA / f"{source}.jsonl").read_text().splitlines()[0])
    statement = {"question", "Problem", "problem", "prompt"}
    bad = {key: value for key, value in good.items() if key not in statement}
    path = _write_jsonl(tmp_path / f"{source}.jsonl", [good, bad, good])
    result = read_tasks(source, path, on_error="skip")
    assert len(result.tasks) == 2 and [e.index for e in result.skipped] == [1]


@pytest.mark.parametrize("source", OOD)
def test_task_dict_round_trip(source):
    for task in load_tasks(source, DATA / f"{source}.jsonl"):
        assert type(task).from_dict(json.loads(json.dumps(task.to_dict()))) == task
