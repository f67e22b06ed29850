"""Record parsers for open-domain QA: TriviaQA and Natural Questions (open).

Both are out-of-distribution evaluation sources of kind ``qa``; their scorers are chosen by
source (`flowsteer.rewards.answer`): TriviaQA's official normalisation for TriviaQA, SQuAD's
for NQ-open, exact match first and token F1 also reported.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from flowsteer.tasks.record import RecordError, str_field, str_list_field
from flowsteer.tasks.task import Task

# TriviaQA's evidence documents run to hundreds of kilobytes per question (whole Wikipedia
# pages, fifty web results); operators cut their material anyway, so a task keeps the start.
MAX_TRIVIAQA_CONTEXT_CHARS = 16_000


def _triviaqa_context(record: Mapping[str, Any]) -> str:
    """Evidence text from ``entity_pages`` (Wikipedia) then ``search_results`` (web), as the rc
    and unfiltered configs publish it: parallel lists of titles and texts; absent or empty in
    the ``nocontext`` configs."""
    parts: list[str] = []
    for field, text_key in (("entity_pages", "wiki_context"), ("search_results", "search_context")):
        block = record.get(field)
        if block is None:
            continue
        if not isinstance(block, Mapping):
            raise RecordError(field, f"expected a mapping of lists, got {type(block).__name__}")
        titles = str_list_field(block, "title", required=False)
        texts = str_list_field(block, text_key, required=False)
        for index, text in enumerate(texts):
            title = titles[index] if index < len(titles) else ""
            parts.append(f"{title}: {text.strip()}" if title else text.strip())
    return "\n\n".join(parts)[:MAX_TRIVIAQA_CONTEXT_CHARS]


def parse_triviaqa(record: Mapping[str, Any], task_id: str) -> Task:
    """TriviaQA (HF ``trivia_qa``, rc / unfiltered / nocontext): ``question`` and ``answer`` with
    ``value``, ``aliases`` and ``normalized_aliases``.

    The golds are the value and the normalised aliases (the official script's ground truths);
    the raw aliases stand in when a record has no normalised ones.
    """
    question = str_field(record, "question")
    answer = record.get("answer")
    if not isinstance(answer, Mapping):
        raise RecordError("answer", "missing or not a {'value', 'aliases', ...} mapping")
    try:
        value = str_field(answer, "value")
        aliases = str_list_field(answer, "aliases")
        normalized = str_list_field(answer, "normalized_aliases", required=False)
    except RecordError as err:
        raise RecordError(f"answer.{err.field}", err.problem) from None
    golds = [g for g in (normalized or aliases) if g.strip()]
    alternatives = tuple(g for g in dict.fromkeys(golds) if g != value)
    meta = {"question_source": record.get("question_source"), "answer_type": answer.get("type")}
    rid = record.get("question_id")
    return Task(
        str(rid or task_id), "triviaqa", "qa", question, value, alternatives=alternatives,
        context=_triviaqa_context(record), meta=meta,
    )  # fmt: skip


def parse_nq_open(record: Mapping[str, Any], task_id: str) -> Task:
    """Natural Questions (open): ``question`` and ``answer``, a list of accepted strings."""
    question = str_field(record, "question")
    answers = [a for a in str_list_field(record, "answer") if a.strip()]
    if not answers:
        raise RecordError("answer", "no non-empty answer")
    return Task(task_id, "nq_open", "qa", question, answers[0], alternatives=tuple(answers[1:]))
