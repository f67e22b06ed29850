"""Rewards: answer scorers per task kind, the structure reward R_div, and their composition.

`score_answer(task, prediction)` is the one entry point for R_ans: it dispatches on
``task.kind`` to `MathAnswerScorer`, `QAAnswerScorer` or `CodeAnswerScorer` (default
options) and returns a float in [0, 1]. `WorkflowReward` composes R_div and R_ans as in
docs/design.md §4.
"""

from __future__ import annotations

from flowsteer.rewards.answer import AnswerScorer, score_answer, score_answer_async
from flowsteer.rewards.code_answer import CodeAnswerScorer, strip_code_fences
from flowsteer.rewards.math_answer import MathAnswerScorer, extract_final_answer, gold_answer
from flowsteer.rewards.qa_answer import QAAnswerScorer, exact_match, normalize_answer, token_f1
from flowsteer.rewards.structure import StructureReward
from flowsteer.rewards.workflow_reward import RewardOutput, WorkflowReward

__all__ = [
    "AnswerScorer",
    "CodeAnswerScorer",
    "MathAnswerScorer",
    "QAAnswerScorer",
    "RewardOutput",
    "StructureReward",
    "WorkflowReward",
    "exact_match",
    "extract_final_answer",
    "gold_answer",
    "normalize_answer",
    "score_answer",
    "score_answer_async",
    "strip_code_fences",
    "token_f1",
]
