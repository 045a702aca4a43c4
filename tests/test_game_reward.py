"""Tests for sftrl.game.reward: one test per row of the published reward table, categories,
reasons, the number-field diagnostics, that every solver answer scores +5, and a case table of
both reward modes (strict, published)."""

from __future__ import annotations

import pytest

from sftrl.game import (
    CATEGORIES,
    REWARD_CORRECT,
    REWARD_ILLEGAL,
    REWARD_NO_FORMULA,
    REWARD_NO_SOLUTION,
    REWARD_PARTIAL,
    REWARD_WRONG_NUMBERS,
    RULES,
    Rule,
    Verdict,
    card_values,
    is_valid_prefix,
    render_completion,
    score,
    solvability_table,
    solve,
)
from sftrl.game.prompts import vocabulary
from sftrl.game.reward import REWARD_MODES, published_solutions

ID, OOD = RULES["id"], RULES["ood"]
HAND = ("10", "4", "2", "2")  # values 10, 4, 2, 2 under both rules


def answer(formula: str, number: str = "10 , 4 , 2 , 2") -> str:
    return f'{{ "number" : [ {number} ] , "formula" : " {formula} = 24 " }}'


def grade(formula: str, cards=HAND, rule: Rule = ID) -> Verdict:
    return score(answer(formula), cards, rule)


def test_table_constants():
    assert (REWARD_CORRECT, REWARD_PARTIAL, REWARD_NO_SOLUTION) == (5, 1, -1)
    assert (REWARD_WRONG_NUMBERS, REWARD_ILLEGAL, REWARD_NO_FORMULA) == (-2, -3, -3)
    assert CATEGORIES == ("correct", "no_json", "illegal_formula", "wrong_numbers", "wrong_value")


def test_row_correct_plus_5():
    v = grade("( 10 - 4 ) * ( 2 + 2 )")
    assert (v.reward, v.success, v.category) == (5, True, "correct")
    assert v.reason == "the formula is correct"


def test_row_illegal_characters_minus_3_and_nothing_else():
    # 7 is not a card and a 2 is unused, but illegal characters stop the checks
    v = grade("( 10 - 4 ) x ( 7 + 2 )")
    assert (v.reward, v.success, v.category) == (-3, False, "illegal_formula")
    assert "characters" in v.reason


def test_row_each_malformed_transition_minus_3():
    assert grade("( 10 - 4 ) ( 2 + 2 )").reward == -3  # ") ("
    v = grade("10 4 * * 2 2")  # number number, op op, number number
    assert (v.reward, v.category) == (-9, "illegal_formula")
    assert v.reason.startswith("the formula is not a valid expression")


def test_row_number_not_on_the_cards_minus_2():
    v = grade("( 10 - 4 ) * ( 2 + 2 ) * 1")
    assert (v.reward, v.category) == (-2, "wrong_numbers")
    assert v.reason == "the formula uses 1 which is not one of the cards"


def test_row_over_used_number_minus_2():
    v = grade("( 10 - 4 ) * ( 2 + 2 ) * 2 / 2")
    assert (v.reward, v.category) == (-2, "wrong_numbers")
    assert v.reason == "the formula uses 2 too many times"


def test_row_unknown_and_over_used_share_one_minus_2():
    # published code: `if invalid: -2 elif overused: -2`
    assert grade("( 10 - 4 ) * ( 2 + 2 ) * 2 / 2 * 1").reward == -2


def test_row_unused_card_minus_2():
    v = grade("10 * 2 + 4")
    assert (v.reward, v.category) == (-2, "wrong_numbers")
    assert v.reason == "the formula does not use 2"


def test_rows_combine_unknown_and_unused_and_malformed():
    assert grade("10 * 2 + 7").reward == -4  # 7 unknown, a 2 unused
    v = grade("10 * 2 + 7 7")  # malformed, 7 unknown, a 2 unused
    assert (v.reward, v.category) == (-7, "illegal_formula")


def test_row_valid_prefix_plus_1():
    v = grade("( 10 - 4 ) * ( 2 + 2")
    assert (v.reward, v.success, v.category) == (1, False, "illegal_formula")
    assert is_valid_prefix("( 10 - 4 ) * ( 2 + 2", (10, 4, 2, 2), 24)
    # a generation cut off mid-formula: no JSON, regex fallback, still a prefix
    cut = '{ "number" : [ 10 , 4 , 2 , 2 ] , "formula" : " ( 10 - 4 ) * ( 2 + 2'
    assert score(cut, HAND, ID).reward == 1


def test_row_otherwise_minus_1():
    v = grade("10 + 4 + 2 + 2")
    assert (v.reward, v.category) == (-1, "wrong_value")
    assert v.reason == "the formula evaluates to 18 not 24"
    # incomplete but not completable to a solution (an extra "(" / a trailing operator)
    assert grade("( ( 10 - 4 ) * ( 2 + 2 )").reward == -1
    assert grade("( 10 - 4 ) * 2 * 2 +").reward == -1
    v = grade("10 / ( 2 - 2 ) * 4")
    assert (v.reward, v.category, v.reason) == (
        -1,
        "illegal_formula",
        "the formula divides by zero",
    )


def test_no_formula_minus_3():
    for text in ["", "I do not know", '{ "number" : [ 10 , 4 , 2 , 2 ] }']:
        v = score(text, HAND, ID)
        assert (v.reward, v.category, v.success) == (-3, "no_json", False)


def test_empty_formula_is_an_illegal_formula():
    v = score('{ "formula" : " = 24 " }', HAND, ID)
    assert (v.reward, v.category, v.reason) == (-2, "illegal_formula", "the formula is empty")


def test_wrong_value_descriptions():
    assert "a fraction" in grade("10 / 4 + 2 + 2").reason
    assert "a negative number" in grade("2 - 10 - 4 - 2").reason
    assert grade("10 * 4 * 2 * 2").reason == "the formula evaluates to a large number not 24"


def test_number_field_diagnostics_and_rule_override():
    cards = ("K", "2", "Q", "7")
    right = '{ "number" : [ 13 , 2 , 12 , 7 ] , "formula" : " 13 + 12 - 7 / 7 " }'
    says_ten = '{ "number" : [ 10 , 2 , 10 , 7 ] , "formula" : " ( 10 - 2 ) * ( 10 - 7 ) " }'
    v = score(says_ten, cards, OOD)
    assert v.says_ten and v.number_correct is False
    assert (v.reward, v.category) == (-4, "wrong_numbers")  # 10 unknown; 13, 12 unused
    assert "uses 10 which is not one of the cards" in v.reason
    v = score(right, cards, OOD)
    assert not v.says_ten and v.number_correct is True
    # under the ID rule the same "10" answer is right, and not an override
    v = score(says_ten, cards, ID)
    assert v.success and v.number_correct is True and not v.says_ten
    assert score('{ "formula" : " 1 " }', cards, OOD).number_correct is None


def test_reasons_are_in_the_vocabulary():
    vocab = set(vocabulary())
    samples = [
        "",
        "( 10 - 4 ) x ( 7 + 2 )",
        "10 4 * * 2 2",
        "10 * 2 + 7 7",
        "( 10 - 4 ) * ( 2 + 2",
        "10 + 4 + 2 + 2",
        "10 / 4 + 2 + 2",
        "2 - 10 - 4 - 2",
        "10 * 4 * 2 * 2",
        "10 / ( 2 - 2 ) * 4",
        "( 10 - 4 ) * 2 * 2 +",
        "1000 + 4 + 2 + 2",
        "(" * 33 + "10 + 4 + 2 + 2" + ")" * 33,
        "1" * 300,
    ]
    for formula in samples:
        reason = grade(formula).reason
        assert set(reason.split()) <= vocab, reason


def solvable_hands(rule: Rule):
    """(cards, one solver solution) for every solvable value multiset the rule's labels reach."""
    labels_for = {
        v: lab
        for lab, v in zip(
            ("A", "2", "3", "4", "5", "6", "7", "8", "9", "10"), range(1, 11), strict=True
        )
    }
    labels_for.update({rule.face_values[2]: "K", rule.face_values[1]: "Q"})
    labels_for.setdefault(rule.face_values[0], "J")
    values_range = (1, max(10, *rule.face_values))
    for ms, sols in solvability_table(values_range).items():
        if not sols or not set(ms) <= set(labels_for):
            continue
        cards = tuple(labels_for[v] for v in ms)
        assert card_values(cards, rule) == ms
        yield cards, solve(ms, rule.target)


@pytest.mark.parametrize("rule", [ID, OOD], ids=["id", "ood"])
def test_every_solver_answer_scores_plus_5(rule):
    checked = 0
    for cards, formula in solvable_hands(rule):
        v = score(render_completion(cards, rule, formula), cards, rule)
        assert (v.reward, v.success, v.category) == (5, True, "correct"), (cards, v)
        checked += 1
    assert checked == (566 if rule is ID else 1362)


# ----------------------------------------------------------------------------- reward modes
# One row per rule of the published reward (LeslieTrue/SFTvsRL, `re_match` + `step_rewards`),
# derived from reading that code: (answer text, hand, published-mode reward, strict reward).
# Rows where our published mode departs from the code say so (docs/science.md lists them).
def compact(formula: str) -> str:
    """The paper models' answer: json.dumps-style spacing, formula without spaces."""
    return f'{{"cards": ["10", "4", "2", "2"], "number": [10, 4, 2, 2], "formula": "{formula}"}}'


def nested(extra: int) -> str:
    """(10-4)*(2+2) with `extra` more brackets around 10-4 (nesting depth extra + 1)."""
    return "(" * extra + "(10-4)" + ")" * extra + "*(2+2)"


MODE_CASES = {
    # field: the whole text as JSON, else '"formula": "(.*?)"', else missing
    "json_whole": (compact("(10-4)*(2+2)=24"), HAND, 5, 5),
    "json_compact_whole": ('{"formula":"(10-4)*(2+2)=24"}', HAND, 5, 5),
    "json_then_text_regex_spacing": (compact("(10-4)*(2+2)=24") + " Done.", HAND, 5, 5),
    "json_compact_then_text": ('{"formula":"(10-4)*(2+2)=24"} Done.', HAND, -3, 5),
    "truncated_before_closing_quote": (compact("(10-4)*(2+2")[:-2], HAND, -3, 1),
    "truncated_complete_formula": (compact("(10-4)*(2+2)")[:-2], HAND, -3, 5),
    "json_pretty_printed": ('{\n  "formula": "(10-4)*(2+2)"\n}', HAND, 5, 5),
    "no_formula": ("I do not know", HAND, -3, -3),
    "formula_null": ('{"formula": null}', HAND, -3, -3),
    # their code crashes on a non-string field: ours -3 (published), "24" read as a number (strict)
    "formula_number_crashes_published": ('{"formula": 24}', HAND, -3, -4),
    "formula_list_crashes_published": ('{"formula": ["(10-4)*(2+2)"]}', HAND, -3, -3),
    # illegal characters: anything but digits and + - * / ( ), spaces included: -3, nothing else
    "spaced_text_format": (answer("( 10 - 4 ) * ( 2 + 2 )"), HAND, -3, 5),
    "space_inside": (compact("(10-4) * (2+2)"), HAND, -3, 5),
    "space_before_equals": (compact("(10-4)*(2+2) = 24"), HAND, -3, 5),
    "letter": (compact("(10-4)x(7+2)"), HAND, -3, -3),
    # Unicode digits pass their character check and int(), then eval raises: -1
    "unicode_digits": (compact("(١٠-٤)*(٢+٢)"), HAND, -1, -3),
    # transitions: -3 each; a misplaced bracket opens/closes nothing in their count
    "number_before_open": (compact("2(10-4)*2"), HAND, -6, -3),
    "close_then_open": (compact("(10-4)(2+2)"), HAND, -6, -3),
    "unmatched_close": (compact("(10-4))*(2+2)"), HAND, -3, -3),
    "operator_operator": (compact("10+-4*2*2"), HAND, -3, -3),
    "leading_operator": (compact("-10+4*2*2"), HAND, -3, -3),
    "unclosed_open_costs_nothing": (compact("((10-4)*(2+2)"), HAND, -1, -1),
    # numbers: unknown or over-used -2 (one elif), unused -2
    "unknown_number": (compact("(10-4)*(2+2)*1"), HAND, -2, -2),
    "over_used_number": (compact("(10-4)*(2+2)*2/2"), HAND, -2, -2),
    "unknown_and_over_used": (compact("(10-4)*(2+2)*2/2*1"), HAND, -2, -2),
    "unused_card": (compact("10*2+4"), HAND, -2, -2),
    "unknown_and_unused": (compact("10*2+7"), HAND, -4, -4),
    "malformed_and_numbers": (compact("10*2+7(7)"), HAND, -10, -7),
    "empty_formula": ('{"formula": "=24"}', HAND, -2, -2),
    # a leading zero is a Python syntax error in their eval: -1
    "leading_zero": (compact("(10-04)*(2+2)"), HAND, -1, 5),
    # value (only with nothing deducted): exactly the target +5, else -1
    "correct": (compact("(10-4)*(2+2)"), HAND, 5, 5),
    # their float eval gives 23.999999999999996 and, the string being a listed solution, 0:
    # broken; both our modes compare the exact value
    "exact_rational_answer": (
        '{"formula": "8/(3-8/3)"}',
        ("8", "3", "8", "3"),
        5,
        5,
    ),
    "wrong_value": (compact("10+4+2+2"), HAND, -1, -1),
    "division_by_zero": (compact("10/(2-2)*4"), HAND, -1, -1),
    # length and nesting: theirs has no length limit and eval's 200-bracket limit
    "nested_41_deep": (compact(nested(40)), HAND, 5, -1),
    "longer_than_256": (compact(nested(130)), HAND, 5, -3),
    "nested_200_deep": (compact(nested(199)), HAND, 5, -3),
    "nested_beyond_python": (compact(nested(200)), HAND, -1, -3),
    "number_of_5000_digits": (compact("1" * 5000), HAND, -4, -3),
    # +1: eval raised and the formula is a string prefix of a listed solution
    "prefix_of_a_solution": (compact("(10-4)*(2+2"), HAND, 1, 1),
    "prefix_of_a_redundant_bracketing": (compact("(2*2)*(10-4"), HAND, 1, -1),
    "prefix_of_a_nested_bracketing": (compact("4*(10-(2+2"), HAND, -1, 1),
    "trailing_operator": (compact("(10-4)*2*2+"), HAND, -1, -1),
}


@pytest.mark.parametrize("case", sorted(MODE_CASES))
def test_reward_modes_case_table(case):
    text, cards, published, strict = MODE_CASES[case]
    assert score(text, cards, ID, mode="published").reward == published
    assert score(text, cards, ID, mode="strict").reward == strict
    assert score(text, cards, ID).reward == strict  # strict is the default


def test_reward_mode_must_be_known():
    with pytest.raises(ValueError, match="reward mode"):
        score(compact("(10-4)*(2+2)"), HAND, ID, mode="paper")


def test_published_reasons_and_categories():
    v = score(compact("(10-4)*(2+2"), HAND, ID, mode="published")
    assert (v.category, v.reason) == ("illegal_formula", "the formula is an unfinished solution")
    v = score(compact("(10-4) * (2+2)"), HAND, ID, mode="published")
    assert (v.category, v.success) == ("illegal_formula", False) and "characters" in v.reason
    v = score('{"formula": 24}', HAND, ID, mode="published")
    assert (v.category, v.reason) == ("no_json", "the answer has no formula")
    v = score(compact("10+4+2+2"), HAND, ID, mode="published")
    assert (v.category, v.reason) == ("wrong_value", "the formula evaluates to 18 not 24")
    v = score(compact("10/(2-2)*4"), HAND, ID, mode="published")
    assert v.reason == "the formula divides by zero"
    v = score(compact("2(10-4)*2"), HAND, ID, mode="published")
    assert v.reason == "the formula is not a valid expression"
    vocab = set(vocabulary())
    for text, cards, _, _ in MODE_CASES.values():
        reason = score(text, cards, ID, mode="published").reason
        assert set(reason.split()) <= vocab, reason


def test_number_field_diagnostics_are_the_same_in_both_modes():
    says_ten = '{"number": [10, 2, 10, 7], "formula": "(10-2)*(10-7)"}'
    for mode in REWARD_MODES:
        v = score(says_ten, ("K", "2", "Q", "7"), OOD, mode=mode)
        assert v.says_ten and v.number_correct is False and v.reward == -4


def test_published_solutions_are_the_listed_bracketings():
    sols = published_solutions((2, 2, 4, 10), 24)
    assert len(sols) == len(set(sols)) == 41
    assert "(10-4)*(2+2)" in sols and "(2*2)*(10-4)" in sols  # redundant brackets listed
    assert not any("((" in s or "))" in s for s in sols)  # no nested bracketing is tried
    assert all(" " not in s for s in sols)
    # every listed solution scores +5, and each cut before its closing bracket +1
    for sol in sols:
        assert score(compact(sol), HAND, ID, mode="published").reward == 5
        if sol.endswith(")"):
            assert score(compact(sol[:-1]), HAND, ID, mode="published").reward == 1


@pytest.mark.parametrize("rule", [ID, OOD], ids=["id", "ood"])
def test_every_solver_answer_without_spaces_scores_plus_5_published(rule):
    checked = 0
    for cards, formula in solvable_hands(rule):
        text = f'{{"formula": "{formula.replace(" ", "")}={rule.target}"}}'
        v = score(text, cards, rule, mode="published")
        assert (v.reward, v.success, v.category) == (5, True, "correct"), (cards, v)
        checked += 1
    assert checked == (566 if rule is ID else 1362)
