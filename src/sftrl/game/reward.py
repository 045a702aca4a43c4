"""The GeneralPoints reward (Chu et al., arXiv 2501.17161, `step_rewards` in their code), verdict
categories and feedback reasons, in two modes (`score(..., mode=...)`; definitions and the
reference-compatibility table: docs/science.md).

Published order, applied to the formula (the "formula" field up to the first '='):
1. illegal characters: -3, and nothing else is checked;
2. each malformed token transition: -3;
3. numbers: -2 if the formula uses a number that is not a card value, else -2 if it uses a
   value more often than the hand has it (one -2 for the pair, an `elif` in their code);
   then -2 if some card value is left unused;
4. only if nothing was deducted: +5 if the value is exactly the target; else +1 if the formula
   is a valid prefix of a known solution; else -1.

mode="strict" (the schema default; our cleaned-up reading, tuned to the spaced text format):
- The answer is the first decodable JSON object in the text, with a tolerant regex fallback
  (`answer.parse_answer`); the formula is stripped, and whitespace is legal.
- No formula at all: -3. Their code turns a missing field into the string "None", which then
  fails the illegal-character check; we keep that value.
- A formula longer than the evaluator's max_length counts as illegal (-3); brackets nested
  deeper than its max_depth give -1.
- Transitions are counted by `formula.scan` (a misplaced "(" still opens a bracket).
- Valid prefix: with nothing deducted the formula uses exactly the card values, so the only
  way it can be a proper prefix of a solution is to be complete but for closing brackets
  (a trailing operator would need another number). Precisely: the formula is "incomplete"
  (see `formula`) and its token sequence is a proper prefix of the token sequence of one of
  `solver.solutions(values, target)`; solutions print with the fewest brackets, the same
  rendering SFT completions use.
- Division by zero with correct numbers: -1 (their eval raised, no prefix matched).

mode="published": the published code's reading on every input (`_score_published`), except
where that code is plainly broken (float equality, a crash on a non-string field, a crash on
4300-digit numbers): docs/science.md section 3 defines it and lists those cases.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from fractions import Fraction
from functools import lru_cache
from itertools import permutations, product

from sftrl.game.answer import parse_answer
from sftrl.game.formula import (
    CLOSE,
    MAY_FOLLOW,
    NUMBER,
    OPEN,
    OPERATORS,
    evaluate_formula,
    scan,
    token_kind,
)
from sftrl.game.rules import FACE_LABELS, Rule, card_values
from sftrl.game.solver import solutions

REWARD_CORRECT = 5
REWARD_PARTIAL = 1  # a valid prefix of a known solution
REWARD_NO_SOLUTION = -1  # well formed, right numbers, wrong value (or not evaluable)
REWARD_WRONG_NUMBERS = -2  # per group: unknown/over-used numbers; unused cards
REWARD_ILLEGAL = -3  # illegal characters (once); each malformed token transition
REWARD_NO_FORMULA = REWARD_ILLEGAL
REWARD_OVER_BUDGET = -1  # an attempt beyond the verification budget (used by evaluation)

REWARD_MODES = ("strict", "published")  # config `reward.mode`

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


def _deducted(tokens: Sequence[str], malformed: int, clauses: list[str]) -> tuple[str, str]:
    """(category, reason) of a formula that lost points in the transition or number checks."""
    if not tokens:
        return "illegal_formula", "the formula is empty"
    if malformed:
        clauses = ["is not a valid expression", *clauses]
    category = "illegal_formula" if malformed else "wrong_numbers"
    return category, "the formula " + " and ".join(clauses)


def score(answer_text: str, cards: Sequence[str], rule: Rule, *, mode: str = "strict") -> Verdict:
    """Grade one answer to the hand `cards` under `rule`; `mode` is one of REWARD_MODES."""
    if mode == "published":
        return _score_published(answer_text, cards, rule)
    if mode != "strict":
        raise ValueError(f"reward mode must be one of {REWARD_MODES}, got {mode!r}")
    parsed = parse_answer(answer_text)
    values = card_values(cards, rule)
    target = rule.target
    verdict = _verdict_maker(parsed, values, cards, rule)

    if parsed.formula is None:
        return verdict(REWARD_NO_FORMULA, "no_json", "the answer has no formula")
    result = evaluate_formula(parsed.formula)
    if result.error == "too_long":
        return verdict(REWARD_ILLEGAL, "illegal_formula", "the formula is too long")
    if result.illegal_chars:
        return verdict(REWARD_ILLEGAL, "illegal_formula", _ILLEGAL_REASON)

    reward = REWARD_ILLEGAL * result.malformed
    penalty, clauses = _number_check(result.numbers, values)
    reward += penalty
    if reward < 0:
        return verdict(reward, *_deducted(result.tokens, result.malformed, clauses))

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
            return verdict(REWARD_PARTIAL, "illegal_formula", _PARTIAL_REASON)
        return verdict(REWARD_NO_SOLUTION, "illegal_formula", "the formula is incomplete")
    reason = _ERROR_REASONS.get(result.error or "", "the formula is not a valid expression")
    return verdict(REWARD_NO_SOLUTION, "illegal_formula", reason)


_ILLEGAL_REASON = "the formula contains characters other than numbers and + - * / ( )"
_PARTIAL_REASON = "the formula is an unfinished solution"


def _verdict_maker(parsed, values: Sequence[int], cards: Sequence[str], rule: Rule):
    """verdict(reward, category, reason) -> Verdict, with the number-field diagnostics of
    `parsed` (the same in both modes: the published language-only reward ignores the field)."""
    number_correct = None if parsed.number is None else sorted(parsed.number) == sorted(values)
    says_ten = _says_ten(parsed.number, cards, rule)

    def verdict(reward: int, category: str, reason: str) -> Verdict:
        success = category == "correct"
        return Verdict(float(reward), success, category, reason, number_correct, says_ten)

    return verdict


# ----------------------------------------------------------------------------- published mode
# The published code's reading (docs/science.md section 3): the whole text as JSON, else this
# regex; tokens are runs of any Unicode digit and + - * / ( ); the value is Python's eval,
# which raises where `_python_eval_error` and the evaluator's "incomplete", "too_deep" and
# "division_by_zero" say.
_PUBLISHED_FIELD = re.compile(r'"formula": "(.*?)"')
_PUBLISHED_TOKEN = re.compile(r"\d+|[-+*/()]")
PYTHON_MAX_NESTING = 200  # CPython's tokenizer limit on open brackets ("too many nested")


def published_field(text: str) -> tuple[str | None, bool]:
    """(formula, non_string) as the published code reads the "formula" field of `text`.

    formula: the field up to its first '=' (not stripped), or None when there is none or it is
    not a string; non_string: the field is JSON but not a string (their code crashes there)."""
    if not isinstance(text, str):
        return None, False
    try:
        obj = json.loads(text)
    except (ValueError, RecursionError):
        obj = None
    if isinstance(obj, dict) and "formula" in obj:
        value = obj["formula"]
    else:
        match = _PUBLISHED_FIELD.search(text)
        value = match.group(1) if match else None
    if value is not None and not isinstance(value, str):
        return None, True
    return (None if value is None else value.split("=", 1)[0]), False


def published_transition_errors(tokens: Sequence[str]) -> int:
    """Malformed transitions as the published code counts them: a misplaced "(" is not
    pushed, a misplaced ")" pops nothing, so a later bracket may cost another -3."""
    errors, depth, prev = 0, 0, None
    for token in tokens:
        kind = token_kind(token)
        ok = prev in MAY_FOLLOW[kind]
        if kind == OPEN:
            depth += ok
        elif kind == CLOSE:
            ok = ok and depth > 0
            depth -= ok
        errors += not ok
        prev = kind
    return errors


def _card_number(token: str) -> int:
    try:
        return int(token)  # Unicode digits included, as in their code
    except ValueError:  # beyond CPython's 4300-digit limit: their code crashes
        return -1  # never a card value


def _python_eval_error(tokens: Sequence[str]) -> str | None:
    """The error Python's eval raises on a formula that passed every published check, before
    any arithmetic (None: it evaluates)."""
    numbers = [t for t in tokens if token_kind(t) == NUMBER]
    if any(not t.isascii() for t in numbers):
        return "malformed"  # "invalid character"
    if any(t[0] == "0" and t.strip("0") for t in numbers):
        return "malformed"  # "leading zeros in decimal integer literals are not permitted"
    return None


def _published_value(tokens: Sequence[str]) -> tuple[Fraction | None, str | None]:
    """(exact value, None) or (None, error code) of a formula with no deduction."""
    error = _python_eval_error(tokens)
    if error is not None:
        return None, error
    text = " ".join(tokens)
    result = evaluate_formula(text, max_length=len(text), max_depth=PYTHON_MAX_NESTING)
    return result.value, result.error


def _published_bracketings(n: int) -> list[list[tuple[int, int]]]:
    """Bracket placements the published solver tries, as (first, last) operand index pairs:
    none; one pair around any run of 2 .. n-1 consecutive operands; and, for 4 or more
    operands, (d0 d1) and (d2 d3) together. (Their solver is written for 4 cards.)"""
    single = [[(i, j)] for i in range(n) for j in range(i + 1, n) if (i, j) != (0, n - 1)]
    double = [[(0, 1), (2, 3)]] if n >= 4 else []
    return [[], *single, *double]


def _render(numbers: Sequence[int], ops: Sequence[str], pairs: list[tuple[int, int]]) -> str:
    opens = {i for i, _ in pairs}
    closes = {j for _, j in pairs}
    parts = []
    for k, number in enumerate(numbers):
        if k:
            parts.append(ops[k - 1])
        parts.append(("(" if k in opens else "") + str(number) + (")" if k in closes else ""))
    return "".join(parts)


@lru_cache(maxsize=4096)
def published_solutions(values: tuple[int, ...], target: int) -> tuple[str, ...]:
    """Every solution string the published environment lists for a hand (its +1 check):
    each distinct order of the values, each operator sequence, each `_published_bracketings`
    placement, written without spaces, whose exact value is `target`. Call with sorted values."""
    out = []
    brackets = _published_bracketings(len(values))
    for order in sorted(set(permutations(values))):
        for ops in product(OPERATORS, repeat=len(values) - 1):
            for pairs in brackets:
                text = _render(order, ops, pairs)
                if evaluate_formula(text).value == target:
                    out.append(text)
    return tuple(out)


def _score_published(answer_text: str, cards: Sequence[str], rule: Rule) -> Verdict:
    values = card_values(cards, rule)
    target = rule.target
    verdict = _verdict_maker(parse_answer(answer_text), values, cards, rule)

    formula, _ = published_field(answer_text)
    if formula is None:
        return verdict(REWARD_NO_FORMULA, "no_json", "the answer has no formula")
    tokens = _PUBLISHED_TOKEN.findall(formula)
    if "".join(tokens) != formula:
        return verdict(REWARD_ILLEGAL, "illegal_formula", _ILLEGAL_REASON)

    malformed = published_transition_errors(tokens)
    numbers = [_card_number(t) for t in tokens if token_kind(t) == NUMBER]
    penalty, clauses = _number_check(numbers, values)
    reward = REWARD_ILLEGAL * malformed + penalty
    if reward < 0:
        return verdict(reward, *_deducted(tokens, malformed, clauses))

    value, error = _published_value(tokens)
    if value == target:
        return verdict(REWARD_CORRECT, "correct", "the formula is correct")
    if value is not None:
        said = _describe_value(value)
        return verdict(
            REWARD_NO_SOLUTION, "wrong_value", f"the formula evaluates to {said} not {target}"
        )
    if any(s.startswith(formula) for s in published_solutions(tuple(sorted(values)), target)):
        return verdict(REWARD_PARTIAL, "illegal_formula", _PARTIAL_REASON)
    # Their last check walks the formula token by token and gives -1 at the first prefix that
    # no solution starts with; a formula no solution starts with always reaches that -1.
    if error == "incomplete":
        return verdict(REWARD_NO_SOLUTION, "illegal_formula", "the formula is incomplete")
    reason = _ERROR_REASONS.get(error or "", "the formula is not a valid expression")
    return verdict(REWARD_NO_SOLUTION, "illegal_formula", reason)
