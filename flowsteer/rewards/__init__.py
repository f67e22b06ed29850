"""Rewards: answer scorers per task kind, the structure reward R_div, and their composition.

`score_answer(task, prediction)` is the one entry point for R_ans: it dispatches on
``task.kind`` to `MathAnswerScorer`, `QAAnswerScorer` or `CodeAnswerScorer` (default
options), or for the six evaluation-only sources on ``task.source`` to their official scorer
(`TriviaQAAnswerScorer`, `ChoiceAnswerScorer`, `IntegerAnswerScorer`, `APPSAnswerScorer`,
`DS1000AnswerScorer`), and returns a float in [0, 1] or raises `AnswerSkipped`.
`WorkflowReward` composes R_div and R_ans as in
docs/design.md §4.
"""

from __future__ import annotations

from flowsteer.rewards.answer import (
    AnswerScorer,
    answer_metrics,
    score_answer,
    score_answer_async,
)
from flowsteer.rewards.apps_answer import APPSAnswerScorer
from flowsteer.rewards.choice_answer import ChoiceAnswerScorer
from flowsteer.rewards.code_answer import CodeAnswerScorer, strip_code_fences
from flowsteer.rewards.ds1000_answer import DS1000AnswerScorer
from flowsteer.rewards.integer_answer import IntegerAnswerScorer
from flowsteer.rewards.math_answer import MathAnswerScorer, extract_final_answer, gold_answer
from flowsteer.rewards.qa_answer import QAAnswerScorer, exact_match, normalize_answer, token_f1
from flowsteer.rewards.skipped import AnswerSkipped
from flowsteer.rewards.structure import StructureReward
from flowsteer.rewards.triviaqa_answer import TriviaQAAnswerScorer
from flowsteer.rewards.workflow_reward import RewardOutput, WorkflowReward

__all__ = [
    "APPSAnswerScorer",
    "AnswerScorer",
    "AnswerSkipped",
    "ChoiceAnswerScorer",
    "CodeAnswerScorer",
    "DS1000AnswerScorer",
    "IntegerAnswerScorer",
    "MathAnswerScorer",
    "QAAnswerScorer",
    "RewardOutput",
    "StructureReward",
    "TriviaQAAnswerScorer",
    "WorkflowReward",
    "answer_metrics",
    "exact_match",
    "extract_final_answer",
    "gold_answer",
    "normalize_answer",
    "score_answer",
    "score_answer_async",
    "strip_code_fences",
    "token_f1",
]
