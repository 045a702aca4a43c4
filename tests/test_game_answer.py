"""Tests for sftrl.game.answer: JSON extraction, regex fallback, robustness."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from sftrl.game import ParsedAnswer, parse_answer

GOOD = (
    '{ "cards" : [ "K" , "2" , "Q" , "7" ] , "number" : [ 10 , 2 , 10 , 7 ] , '
    '"formula" : " ( 10 - 2 ) * ( 10 - 7 ) = 24 " }'
)


def test_well_formed_answer():
    parsed = parse_answer(GOOD)
    assert parsed == ParsedAnswer(
        True, ["K", "2", "Q", "7"], [10, 2, 10, 7], "( 10 - 2 ) * ( 10 - 7 )"
    )


def test_trailing_junk_and_leading_text_are_ignored():
    parsed = parse_answer("Sure! " + GOOD + " } [EOS] more { junk")
    assert parsed.json_ok and parsed.formula == "( 10 - 2 ) * ( 10 - 7 )"


def test_any_spacing_and_compact_json():
    parsed = parse_answer('{"cards":["K"],"number":[13],"formula":"(10-2)*(10-7)=24"}')
    assert parsed.formula == "(10-2)*(10-7)" and parsed.number == [13]


def test_first_object_with_a_formula_wins():
    parsed = parse_answer('{"note": 1} {"formula": "1 + 2"} {"formula": "3"}')
    assert parsed.formula == "1 + 2"


def test_formula_is_cut_at_the_first_equals_sign():
    assert parse_answer('{"formula": "1 + 2 = 3 = 4"}').formula == "1 + 2"
    assert parse_answer('{"formula": "= 24"}').formula == ""


def test_regex_fallback_for_broken_json():
    broken = '{ "cards" : [ "K" , "2" ] , "number" : [ 10 , 2 ] , "formula" : " ( 10 - 2 ) = 8 " '
    parsed = parse_answer(broken)
    assert not parsed.json_ok
    assert parsed.formula == "( 10 - 2 )" and parsed.number == [10, 2]


def test_truncated_generation_keeps_the_formula_prefix():
    cut = GOOD[: GOOD.index("( 10 - 7")] + "( 10 - 7"
    parsed = parse_answer(cut)
    assert not parsed.json_ok
    assert parsed.formula == "( 10 - 2 ) * ( 10 - 7"


def test_missing_or_odd_fields():
    assert parse_answer("no json here") == ParsedAnswer(False, None, None, None)
    assert parse_answer("") == ParsedAnswer(False, None, None, None)
    parsed = parse_answer('{"cards": "K", "number": [10, "2", "x"], "formula": ["1"]}')
    assert parsed.json_ok and parsed.cards is None and parsed.number is None
    assert parsed.formula is None
    assert parse_answer('{"number": ["10", 2.0], "formula": 24}').number == [10, 2]
    assert parse_answer('{"number": [true], "formula": 24}').formula == "24"
    assert parse_answer('{"number": [true], "formula": 24}').number is None


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=300))
def test_arbitrary_text_never_raises(text):
    assert isinstance(parse_answer(text), ParsedAnswer)


@settings(max_examples=200, deadline=None)
@given(st.text(alphabet='{}[]":, 0123456789formulanumbercards=+-*/()', max_size=200))
def test_json_like_noise_never_raises(text):
    assert isinstance(parse_answer(text), ParsedAnswer)


def test_adversarial_inputs_are_bounded():
    import time

    for text in ["{" * 100000, "[" * 100000, '{"formula": "' + "1+" * 100000, "\x00" * 10000]:
        start = time.perf_counter()
        parse_answer(text)
        assert time.perf_counter() - start < 2.0
