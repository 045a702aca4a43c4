"""Tests for sftrl.game.formula: the safe evaluator (unit, adversarial, property-based)."""

from __future__ import annotations

import time
from fractions import Fraction

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sftrl.game.formula import FormulaResult, evaluate_formula, format_formula, scan
from sftrl.game.reward import published_transition_errors

FUZZ = settings(max_examples=300, deadline=None)


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("( 10 - 4 ) * ( 2 + 2 )", 24),
        ("(10-4)*(2+2)", 24),
        ("8 / ( 3 - 8 / 3 )", 24),
        ("1 + 2 * 3", 7),
        ("12 / 4 / 3", 1),  # left to right
        ("10 - 4 - 2", 4),
        ("2 * 3 / 4", Fraction(3, 2)),
        ("((7))", 7),
        (" 0 ", 0),
        ("007", 7),
    ],
)
def test_values(text, value):
    result = evaluate_formula(text)
    assert result.ok and result.error is None
    assert result.value == value


def test_numbers_are_reported_in_order():
    result = evaluate_formula("( 10 - 4 ) * ( 2 + 2 )")
    assert result.numbers == (10, 4, 2, 2)
    assert result.tokens == ("(", "10", "-", "4", ")", "*", "(", "2", "+", "2", ")")


@pytest.mark.parametrize(
    ("text", "error"),
    [
        ("", "empty"),
        ("   \n", "empty"),
        ("1 / ( 2 - 2 )", "division_by_zero"),
        ("1 / 0", "division_by_zero"),
        ("10 x 4", "illegal_character"),
        ("1.5 + 2", "illegal_character"),
        ("3 = 3", "illegal_character"),
        ("٣ + ٣", "illegal_character"),  # Arabic-Indic digits
        ("３ + ３", "illegal_character"),  # fullwidth digits
        ("1\x00+2", "illegal_character"),
        ("1\u00a0+ 2", "illegal_character"),  # non-ASCII whitespace
        ("- 3 + 27", "malformed"),  # unary minus
        ("2 * - 3", "malformed"),
        ("1 2", "malformed"),
        ("( )", "malformed"),
        ("( 1 ) ( 2 )", "malformed"),
        ("2 ( 3 )", "malformed"),
        ("1 + 2 )", "malformed"),
        ("1 +", "incomplete"),
        ("( 1 + 2", "incomplete"),
        ("(", "incomplete"),
        ("1234567 + 1", "number_too_large"),
    ],
)
def test_error_codes(text, error):
    result = evaluate_formula(text)
    assert not result.ok and result.value is None
    assert result.error == error


def test_max_number_is_configurable():
    assert evaluate_formula("1000000").ok
    assert evaluate_formula("1000001").error == "number_too_large"
    assert evaluate_formula("1000001").numbers == (10**6 + 1,)
    assert evaluate_formula("99", max_number=50).error == "number_too_large"


@pytest.mark.parametrize(
    ("text", "malformed", "published", "incomplete"),
    [
        # malformed: our count (a misplaced "(" still opens a bracket); published: the
        # published reward's count (a misplaced bracket opens or closes nothing)
        ("1 2", 1, 1, False),  # number number
        ("1 + * 2", 1, 1, False),  # op op
        ("( )", 1, 1, False),
        ("( 1 ) ( 2 )", 1, 2, False),  # ") (": published also counts the last ")"
        ("2 ( 3 )", 1, 2, False),  # number "(": published also counts the ")"
        ("+ 1", 1, 1, False),  # leading operator
        (") 1", 2, 2, False),  # leading ) and number after )
        ("1 + 2 ) ) + 3", 2, 2, False),  # unmatched closers, one each
        ("10 4 - 2 2", 2, 2, False),
        ("1 +", 0, 0, True),  # trailing operator: incomplete, not malformed
        ("( ( 1 + 2", 0, 0, True),  # unclosed: incomplete, not malformed (both)
        ("( 10 - 4 ) * ( 2 + 2", 0, 0, True),
        ("1 + 2", 0, 0, False),
    ],
)
def test_malformed_transition_counts(text, malformed, published, incomplete):
    s = scan(text)
    assert (s.malformed, s.incomplete) == (malformed, incomplete)
    assert published_transition_errors(s.tokens) == published


def test_illegal_characters_are_counted():
    assert scan("1 a+ b2 =").illegal_chars == 3
    assert scan("( 1 + 2 )").illegal_chars == 0


def _bounded(text: str, **limits) -> FormulaResult:
    start = time.perf_counter()
    result = evaluate_formula(text, **limits)
    assert time.perf_counter() - start < 2.0
    return result


@pytest.mark.parametrize(
    ("text", "limits", "error"),
    [
        ("__import__('os').system('ls')", {}, "illegal_character"),
        ("2**999999", {}, "malformed"),
        ("2 ** 999999", {}, "malformed"),
        ("9" * 10000, {}, "too_long"),
        ("9" * 10000, {"max_length": 10**6}, "number_too_large"),
        ("(" * 500 + "1" + ")" * 500, {}, "too_long"),
        ("(" * 500 + "1" + ")" * 500, {"max_length": 10**4}, "too_deep"),
        ("(" * 5000 + "1" + ")" * 5000, {"max_length": 10**5, "max_depth": 10**6}, "too_deep"),
        ("1 + " * 100000, {}, "too_long"),
        ("1 + " * 100000, {"max_length": 10**6}, "incomplete"),
        ("\x00" * 100, {}, "illegal_character"),
        ("lambda: 1", {}, "illegal_character"),
        ("().__class__", {}, "illegal_character"),
        ("1e9", {}, "illegal_character"),
        ("0x10", {}, "illegal_character"),
        ("1_000", {}, "illegal_character"),
    ],
)
def test_adversarial_inputs_give_clear_errors_in_bounded_time(text, limits, error):
    assert _bounded(text, **limits).error == error


def test_long_valid_chains_evaluate_without_recursion():
    result = _bounded("1 + " * 50000 + "1", max_length=10**6)
    assert result.ok and result.value == 50001
    result = _bounded(" * ".join(["1000000"] * 30), max_length=10**4)
    assert result.ok and result.value == 10 ** (6 * 30)


def test_non_strings_do_not_raise():
    assert evaluate_formula(None).error == "not_a_string"  # type: ignore[arg-type]
    assert evaluate_formula(b"1+2").error == "not_a_string"  # type: ignore[arg-type]


def test_format_formula_spaces_tokens():
    assert format_formula("(10-4)*(2+2)") == "( 10 - 4 ) * ( 2 + 2 )"
    assert format_formula("  12/ 4 ") == "12 / 4"
    with pytest.raises(ValueError):
        format_formula("1 x 2")


@FUZZ
@given(st.text(max_size=400))
def test_arbitrary_text_never_raises(text):
    result = evaluate_formula(text)
    assert isinstance(result, FormulaResult)
    assert result.ok == (result.error is None) == (result.value is not None)


ALPHABET = st.sampled_from(["1", "2", "0", "13", "+", "-", "*", "/", "(", ")", " "])


@FUZZ
@given(st.lists(ALPHABET, max_size=40))
def test_structure_check_matches_the_grammar(parts):
    """No malformed transition and not incomplete <=> the parser accepts the tokens."""
    text = " ".join(parts)
    s = scan(text)
    result = evaluate_formula(text)
    if not s.tokens:
        assert result.error == "empty"
    elif s.malformed:
        assert result.error in ("malformed", "too_deep")
    elif s.incomplete:
        assert result.error in ("incomplete", "too_deep")
    else:
        assert result.ok or result.error in ("division_by_zero", "too_deep")


def _trees(max_leaves: int = 8):
    leaf = st.integers(0, 30).map(lambda n: (str(n), Fraction(n)))

    def combine(children):
        def build(args):
            (lt, lv), op, (rt, rv) = args
            if op == "/" and rv == 0:
                return (lt, lv)  # keep the tree well defined
            value = {"+": lv + rv, "-": lv - rv, "*": lv * rv, "/": lv / rv if rv else 0}[op]
            return (f"({lt}{op} {rt} )", value)

        return st.tuples(children, st.sampled_from("+-*/"), children).map(build)

    return st.recursive(leaf, combine, max_leaves=max_leaves)


@FUZZ
@given(_trees())
def test_fully_bracketed_trees_evaluate_exactly(tree):
    text, value = tree
    result = evaluate_formula(text)
    assert result.ok, (text, result.error)
    assert result.value == value


def test_evaluator_source_never_uses_eval_compile_or_ast():
    import inspect

    from sftrl.game import formula

    source = inspect.getsource(formula)
    for banned in ("eval(", "exec(", "compile(", "import ast", "__import__"):
        assert banned not in source.replace("evaluate_formula(", ""), banned
