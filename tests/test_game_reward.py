"""Tests for sftrl.game.reward: one test per row of the published reward table, categories,
reasons, the number-field diagnostics, and that every solver answer scores +5."""

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


@pytest.mark.parametrize("rule", [ID, OOD], ids=["id", "ood"])
def test_every_solver_answer_scores_plus_5(rule):
    labels_for = {
        v: lab
        for lab, v in zip(
            ("A", "2", "3", "4", "5", "6", "7", "8", "9", "10"), range(1, 11), strict=True
        )
    }
    labels_for.update({rule.face_values[2]: "K", rule.face_values[1]: "Q"})
    labels_for.setdefault(rule.face_values[0], "J")
    values_range = (1, max(10, *rule.face_values))
    checked = 0
    for ms, sols in solvability_table(values_range).items():
        if not sols or not set(ms) <= set(labels_for):
            continue
        cards = tuple(labels_for[v] for v in ms)
        assert card_values(cards, rule) == ms
        v = score(render_completion(cards, rule, solve(ms, rule.target)), cards, rule)
        assert (v.reward, v.success, v.category) == (5, True, "correct"), (cards, v)
        checked += 1
    assert checked == (566 if rule is ID else 1362)
