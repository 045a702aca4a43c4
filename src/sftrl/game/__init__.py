"""GeneralPoints: cards and rules, exact solver, safe formula evaluator, prompts, reward."""

from sftrl.game.answer import ParsedAnswer, parse_answer
from sftrl.game.formula import FormulaResult, evaluate_formula, format_formula
from sftrl.game.prompts import render_completion, render_feedback, render_prompt, vocabulary
from sftrl.game.reward import (
    CATEGORIES,
    REWARD_CORRECT,
    REWARD_ILLEGAL,
    REWARD_MODES,
    REWARD_NO_FORMULA,
    REWARD_NO_SOLUTION,
    REWARD_OVER_BUDGET,
    REWARD_PARTIAL,
    REWARD_WRONG_NUMBERS,
    Verdict,
    is_valid_prefix,
    score,
)
from sftrl.game.rules import (
    FACE_LABELS,
    LABELS,
    RULES,
    Rule,
    card_values,
    id_multiset_key,
    label_rank,
    rule_sentence,
    sample_hand,
)
from sftrl.game.solver import is_solvable, solutions, solvability_table, solve

__all__ = [
    "CATEGORIES",
    "FACE_LABELS",
    "LABELS",
    "REWARD_CORRECT",
    "REWARD_ILLEGAL",
    "REWARD_MODES",
    "REWARD_NO_FORMULA",
    "REWARD_NO_SOLUTION",
    "REWARD_OVER_BUDGET",
    "REWARD_PARTIAL",
    "REWARD_WRONG_NUMBERS",
    "RULES",
    "FormulaResult",
    "ParsedAnswer",
    "Rule",
    "Verdict",
    "card_values",
    "evaluate_formula",
    "format_formula",
    "id_multiset_key",
    "is_solvable",
    "is_valid_prefix",
    "label_rank",
    "parse_answer",
    "render_completion",
    "render_feedback",
    "render_prompt",
    "rule_sentence",
    "sample_hand",
    "score",
    "solutions",
    "solvability_table",
    "solve",
    "vocabulary",
]
