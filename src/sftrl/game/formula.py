"""Safe formula evaluator: own tokenizer, structure check, recursive-descent parser, Fractions.

Never uses eval/compile/ast. Never raises on a string; every failure is an error code:

| code | meaning |
|---|---|
| "not_a_string" | the input is not a str |
| "empty" | no tokens (empty or whitespace only) |
| "too_long" | more than max_length characters (checked before anything else is scanned) |
| "illegal_character" | a character other than ASCII digits, + - * / ( ) and ASCII whitespace |
| "number_too_large" | a number above max_number |
| "too_deep" | brackets nested deeper than max_depth |
| "malformed" | a token that cannot follow the previous one (see below) |
| "incomplete" | well formed so far but ends early: trailing operator or unclosed "(" |
| "division_by_zero" | a division by an operand equal to zero |

Tokens: non-negative integers written with ASCII digits only (unicode digits such as '٣' or
'３' are illegal characters), the operators + - * /, brackets, whitespace (ignored).

Malformed token transitions (counted one per offending token): a number after a number or ")";
an operator at the start, after an operator or after "("; "(" after a number or ")"; ")" at the
start, after an operator or "(", or with no open "(". A misplaced "(" still opens a bracket, so
its ")" is not counted again; the published reward counts both (`reward.score(mode="published")`,
docs/science.md).
Unary minus is malformed: the game combines the cards with binary + - * / only, so "-3" or
"2 * -3" is rejected (an operator at the start / after an operator).
Incomplete endings (a trailing operator, unclosed "(") are NOT counted as malformed: they are
what a correct formula cut short looks like, and the reward gives credit to such prefixes.
"""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction

NUMBER, OPERATOR, OPEN, CLOSE = "number", "operator", "open", "close"
OPERATORS = "+-*/"
_DIGITS = frozenset("0123456789")
_WHITESPACE = frozenset(" \t\n\r\f\v")
_KIND = {"+": OPERATOR, "-": OPERATOR, "*": OPERATOR, "/": OPERATOR, "(": OPEN, ")": CLOSE}

# kinds each token kind may follow; None is the start of the formula
MAY_FOLLOW = {
    NUMBER: (None, OPERATOR, OPEN),
    OPERATOR: (NUMBER, CLOSE),
    OPEN: (None, OPERATOR, OPEN),
    CLOSE: (NUMBER, CLOSE),
}


@dataclass
class FormulaResult:
    """Outcome of `evaluate_formula`; `value` is set only when ok.

    numbers: the integers in the formula, in order (a number above max_number is reported as
    max_number + 1, so it never matches a card). illegal_chars, malformed, incomplete and tokens
    are filled whenever the text could be scanned (not for too_long / not_a_string).
    """

    ok: bool
    value: Fraction | None
    numbers: tuple[int, ...]
    error: str | None
    illegal_chars: int = 0
    malformed: int = 0
    incomplete: bool = False
    tokens: tuple[str, ...] = ()


@dataclass(frozen=True)
class Scan:
    """Tokens of a formula and what the reward counts about them."""

    tokens: tuple[str, ...]
    numbers: tuple[int, ...]
    illegal_chars: int
    number_too_large: bool
    malformed: int
    incomplete: bool
    max_depth: int


def token_kind(token: str) -> str:
    return _KIND.get(token, NUMBER)


def scan(text: str, max_number: int = 10**6) -> Scan:
    """Tokenize and check structure in one linear pass; never raises for a str."""
    tokens: list[str] = []
    numbers: list[int] = []
    illegal = 0
    too_large = False
    # more digits than max_number has means too large; int() of a huge run is never attempted
    max_digits = len(str(max_number))
    i, n = 0, len(text)
    while i < n:
        ch = text[i]
        if ch in _DIGITS:
            j = i
            while j < n and text[j] in _DIGITS:
                j += 1
            run = text[i:j]
            value = int(run) if len(run) <= max_digits else max_number + 1
            if value > max_number:
                too_large, value = True, max_number + 1
            tokens.append(run)
            numbers.append(value)
            i = j
            continue
        if ch in _KIND:
            tokens.append(ch)
        elif ch not in _WHITESPACE:
            illegal += 1
        i += 1

    malformed, depth, max_depth = 0, 0, 0
    prev: str | None = None
    for token in tokens:
        kind = token_kind(token)
        ok = prev in MAY_FOLLOW[kind]
        if kind == OPEN:
            depth += 1
            max_depth = max(max_depth, depth)
        elif kind == CLOSE:
            if depth == 0:
                ok = False  # nothing to close
            else:
                depth -= 1  # close even when misplaced, so one defect counts once
        malformed += not ok
        prev = kind
    incomplete = bool(tokens) and (depth > 0 or prev in (OPERATOR, OPEN))
    return Scan(tuple(tokens), tuple(numbers), illegal, too_large, malformed, incomplete, max_depth)


class _Parser:
    """Recursive descent over a structurally valid token list.

    expr   := term (("+" | "-") term)*
    term   := factor (("*" | "/") factor)*
    factor := NUMBER | "(" expr ")"
    Recursion depth is bounded because nesting was checked against max_depth beforehand.
    """

    def __init__(self, tokens: tuple[str, ...]) -> None:
        self.tokens = tokens
        self.pos = 0

    def peek(self) -> str | None:
        return self.tokens[self.pos] if self.pos < len(self.tokens) else None

    def take(self) -> str:
        token = self.peek()
        if token is None:
            raise _ParseError("malformed")
        self.pos += 1
        return token

    def parse(self) -> Fraction:
        value = self.expr()
        if self.peek() is not None:
            raise _ParseError("malformed")
        return value

    def expr(self) -> Fraction:
        value = self.term()
        while self.peek() in ("+", "-"):
            op = self.take()
            right = self.term()
            value = value + right if op == "+" else value - right
        return value

    def term(self) -> Fraction:
        value = self.factor()
        while self.peek() in ("*", "/"):
            op = self.take()
            right = self.factor()
            if op == "*":
                value = value * right
            elif right == 0:
                raise _ParseError("division_by_zero")
            else:
                value = value / right
        return value

    def factor(self) -> Fraction:
        token = self.take()
        if token == "(":
            value = self.expr()
            if self.take() != ")":
                raise _ParseError("malformed")
            return value
        if token_kind(token) != NUMBER:
            raise _ParseError("malformed")
        return Fraction(int(token))


class _ParseError(Exception):
    def __init__(self, code: str) -> None:
        super().__init__(code)
        self.code = code


def evaluate_formula(
    text: str, *, max_length: int = 256, max_depth: int = 32, max_number: int = 10**6
) -> FormulaResult:
    """Evaluate an arithmetic formula exactly; see the module docstring for the error codes."""
    if not isinstance(text, str):
        return FormulaResult(False, None, (), "not_a_string")
    if len(text) > max_length:
        return FormulaResult(False, None, (), "too_long")
    s = scan(text, max_number)

    def fail(code: str) -> FormulaResult:
        return FormulaResult(
            False, None, s.numbers, code, s.illegal_chars, s.malformed, s.incomplete, s.tokens
        )

    if s.illegal_chars:
        return fail("illegal_character")
    if not s.tokens:
        return fail("empty")
    if s.number_too_large:
        return fail("number_too_large")
    if s.max_depth > max_depth:
        return fail("too_deep")
    if s.malformed:
        return fail("malformed")
    if s.incomplete:
        return fail("incomplete")
    try:
        value = _Parser(s.tokens).parse()
    except _ParseError as err:
        return fail(err.code)
    except RecursionError:  # only reachable if a caller raises max_depth beyond the stack
        return fail("too_deep")
    return FormulaResult(True, value, s.numbers, None, 0, 0, False, s.tokens)


def format_formula(text: str) -> str:
    """The formula in the spaced text format ("(10-4)*(2+2)" -> "( 10 - 4 ) * ( 2 + 2 )").

    Raises ValueError on illegal characters (only used on formulas we generate ourselves).
    """
    s = scan(text)
    if s.illegal_chars:
        raise ValueError(f"formula has illegal characters: {text!r}")
    return " ".join(s.tokens)
