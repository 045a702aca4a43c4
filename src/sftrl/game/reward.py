"""The published GeneralPoints reward (Chu et al., arXiv 2501.17161, `step_rewards` in their
code), verdict categories and feedback reasons.

Published order, applied to the formula (the "formula" field up to the first '='):
1. illegal characters: -3, and nothing else is checked;
2. each malformed token transition: -3 (counted by `formula.scan`);
3. numbers: -2 if the formula uses a number that is not a card value, else -2 if it uses a
   value more often than the hand has it (one -2 for the pair, an `elif` in their code);
   then -2 if some card value is left unused;
4. only if nothing was deducted: +5 if the value is exactly the target; else +1 if the formula
   is a valid prefix of a known solution; else -1.

Choices where the published code is silent or tied to its own format:
- Whitespace is legal (our text format spaces every token; theirs had none).
- No formula at all: -3. Their code turns a missing field into the string "None", which then
  fails the illegal-character check; we keep that value.
- A formula longer than the evaluator's max_length counts as illegal (-3).
- Valid prefix: with nothing deducted the formula uses exactly the card values, so the only
  way it can be a proper prefix of a solution is to be complete but for closing brackets
  (a trailing operator would need another number). Precisely: the formula is "incomplete"
  (see `formula`) and its token sequence is a proper prefix of the token sequence of one of
  `solver.solutions(values, target)`; solutions print with the fewest brackets, the same
  rendering SFT completions use.
- Division by zero with correct numbers: -1 (their eval raised, no prefix matched).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from fractions import Fraction

from sftrl.game.answer import parse_answer
from sftrl.game.formula import evaluate_formula, scan
from sftrl.game.rules import FACE_LABELS, Rule, card_values
from sftrl.game.solver import solutions

REWARD_CORRECT = 5
REWARD_PARTIAL = 1  # a valid prefix of a known solution
REWARD_NO_SOLUTION = -1  # well formed, right numbers, wrong value (or not evaluable)
REWARD_WRONG_NUMBERS = -2  # per group: unknown/over-used numbers; unused cards
REWARD_ILLEGAL = -3  # illegal characters (once); each malformed token transition
REWARD_NO_FORMULA = REWARD_ILLEGAL
REWARD_OVER_BUDGET = -1  # an attempt beyond the verification budget (used by evaluation)

CATEGORIES = ("correct", "no_json", "illegal_formula", "wrong_numbers", "wrong_value")

# Reasons are fed back to the model, so they are in the spaced text format and only speak
# numbers the tokenizer has (0..MAX_SPOKEN_NUMBER); larger ones become words.
MAX_SPOKEN_NUMBER = 99
REASON_TEMPLATES = (
    "the answer has no formula",
    "the formula is too long",
    "the formula contains characters other than numbers and + - * / ( )",
    "the formula is empty",
    "the formula is not a valid expression",
    "the formula uses N which is not one of the cards",
    "the formula uses N too many times",
    "the formula does not use N",
    "the formula is correct",
    "the formula evaluates to N not N",
    "the formula evaluates to a fraction a negative number a large number",
    "the formula is an unfinished solution",
    "the formula is incomplete",
    "the formula divides by zero",
    "the formula has too many brackets",
    "the formula and",
)


# evaluator errors that remain possible once nothing was deducted
_ERROR_REASONS = {
    "division_by_zero": "the formula divides by zero",
    "too_deep": "the formula has too many brackets",
}


@dataclass
class Verdict:
    """The grade of one answer.

    category: the first failing check, in the reward's order (see CATEGORIES; an empty or
    unfinished formula is "illegal_formula"). reason: one spaced sentence for feedback.
    number_correct: the "number" field holds the card values under the rule, compared as
    multisets like the published check (None when the field is missing or not integers).
    says_ten: the "number" field writes 10 for a face card the rule values otherwise.
    """

    reward: float
    success: bool
    category: str
    reason: str
    number_correct: bool | None
    says_ten: bool


def reason_vocabulary() -> set[str]:
    """Every token a reason can contain (numbers 0..MAX_SPOKEN_NUMBER included)."""
    words = {w for t in REASON_TEMPLATES for w in t.split() if w != "N"}
    return words | {str(n) for n in range(MAX_SPOKEN_NUMBER + 1)}


def _say(n: int) -> str:
    return str(n) if 0 <= n <= MAX_SPOKEN_NUMBER else "a large number"


def _describe_value(value: Fraction) -> str:
    if value.denominator != 1:
        return "a fraction"
    if value < 0:
        return "a negative number"
    return _say(int(value))


def _says_ten(number: list[int] | None, cards: Sequence[str], rule: Rule) -> bool:
    """The number field writes 10 for a face card the rule values otherwise (rule override)."""
    if number is None:
        return False
    faces = dict(zip(FACE_LABELS, rule.face_values, strict=True))
    # positional: the number field lists the cards' values in card order; a list of the wrong
    # length is judged as far as it goes
    pairs = zip(cards, number, strict=False)
    return any(card in faces and faces[card] != 10 and stated == 10 for card, stated in pairs)


def _number_check(used: Sequence[int], values: Sequence[int]) -> tuple[int, list[str]]:
    """(penalty, reason clauses) of the published number check."""
    have, want = Counter(used), Counter(values)
    unknown = [n for n in have if n not in want]
    over = [n for n in have if n in want and have[n] > want[n]]
    unused = [v for v in want if want[v] > have[v]]
    # published: unknown numbers and over-use share one -2 (elif); unused cards another -2
    penalty = REWARD_WRONG_NUMBERS if (unknown or over) else 0
    penalty += REWARD_WRONG_NUMBERS if unused else 0
    clauses = [f"uses {_say(n)} which is not one of the cards" for n in unknown]
    clauses += [f"uses {_say(n)} too many times" for n in over]
    clauses += [f"does not use {_say(v)}" for v in unused]
    return penalty, clauses


def is_valid_prefix(formula: str, values: Sequence[int], target: int) -> bool:
    """The formula's tokens are a proper prefix of the tokens of a solver solution."""
    tokens = scan(formula).tokens
    if not tokens:
        return False
    k = len(tokens)
    return any(
        len(sol_tokens) > k and tuple(sol_tokens[:k]) == tokens
        for sol_tokens in (s.split() for s in solutions(values, target))
    )


def score(answer_text: str, cards: Sequence[str], rule: Rule) -> Verdict:
    """Grade one answer to the hand `cards` under `rule` with the published reward."""
    parsed = parse_answer(answer_text)
    values = card_values(cards, rule)
    target = rule.target
    number_correct = None if parsed.number is None else sorted(parsed.number) == sorted(values)
    says_ten = _says_ten(parsed.number, cards, rule)

    def verdict(reward: int, category: str, reason: str) -> Verdict:
        success = category == "correct"
        return Verdict(float(reward), success, category, reason, number_correct, says_ten)

    if parsed.formula is None:
        return verdict(REWARD_NO_FORMULA, "no_json", "the answer has no formula")
    result = evaluate_formula(parsed.formula)
    if result.error == "too_long":
        return verdict(REWARD_ILLEGAL, "illegal_formula", "the formula is too long")
    if result.illegal_chars:
        return verdict(
            REWARD_ILLEGAL,
            "illegal_formula",
            "the formula contains characters other than numbers and + - * / ( )",
        )

    reward = REWARD_ILLEGAL * result.malformed
    penalty, clauses = _number_check(result.numbers, values)
    reward += penalty
    if reward < 0:
        if not result.tokens:
            return verdict(reward, "illegal_formula", "the formula is empty")
        if result.malformed:
            clauses.insert(0, "is not a valid expression")
        category = "illegal_formula" if result.malformed else "wrong_numbers"
        return verdict(reward, category, "the formula " + " and ".join(clauses))

    # nothing deducted: the formula is well formed (maybe unfinished) and uses exactly the cards
    if result.ok and result.value is not None:
        if result.value == target:
            return verdict(REWARD_CORRECT, "correct", "the formula is correct")
        said = _describe_value(result.value)
        return verdict(
            REWARD_NO_SOLUTION, "wrong_value", f"the formula evaluates to {said} not {target}"
        )
    if result.error == "incomplete":
        if is_valid_prefix(parsed.formula, values, target):
            reason = "the formula is an unfinished solution"
            return verdict(REWARD_PARTIAL, "illegal_formula", reason)
        return verdict(REWARD_NO_SOLUTION, "illegal_formula", "the formula is incomplete")
    reason = _ERROR_REASONS.get(result.error or "", "the formula is not a valid expression")
    return verdict(REWARD_NO_SOLUTION, "illegal_formula", reason)
