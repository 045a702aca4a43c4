"""Exact GeneralPoints solver: every order and bracketing, rational arithmetic.

Search: an expression over a multiset of card values is `left op right` where {left, right} is
a split of the multiset into two non-empty sub-multisets; recursing over splits enumerates every
binary expression tree (every order and every bracketing). Division by zero is skipped. Values
are `fractions.Fraction`, so 8 / (3 - 8 / 3) = 24 is found exactly.

Speed: results are memoised on the sorted sub-multiset (many hands share sub-multisets). Parts
of up to 3 values have every expression enumerated once; above that the search is
meet-in-the-middle: for each value x of the smaller part, the value y the other part would need
(t - x, x - t, t / x, ...) is computed and looked up, or searched for recursively, instead of
pairing x with every value. A full 4-card table over 1..13 takes well under a second of CPU;
a 5-card hand takes milliseconds.

Rendering: formulas use the spaced text format and the fewest parentheses that keep the value
under the usual precedence and left-to-right evaluation, e.g. "( 10 - 4 ) * ( 2 + 2 )".
Distinct trees that print the same string are one solution.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from fractions import Fraction
from functools import lru_cache
from itertools import combinations_with_replacement

# precedence of the top operator of an expression; a bare number binds tightest
_ATOM, _MUL, _ADD = 3, 2, 1
_PREC = {"+": _ADD, "-": _ADD, "*": _MUL, "/": _MUL}

# an expression as rendered text plus the precedence of its top operator
Expr = tuple[str, int]


def _render(op: str, left: Expr, right: Expr) -> Expr:
    prec = _PREC[op]
    left_text, left_prec = left
    right_text, right_prec = right
    if left_prec < prec:
        left_text = f"( {left_text} )"
    # the right operand of - and / also needs brackets at equal precedence: a - (b - c)
    if right_prec < prec or (right_prec == prec and op in "-/"):
        right_text = f"( {right_text} )"
    return f"{left_text} {op} {right_text}", prec


def _splits(ms: tuple[int, ...]) -> Iterator[tuple[tuple[int, ...], tuple[int, ...]]]:
    """Each unordered split {A, B} of the sorted multiset into non-empty parts, once."""
    n = len(ms)
    seen: set[tuple[tuple[int, ...], tuple[int, ...]]] = set()
    # masks that contain element 0 enumerate every unordered split exactly once by position;
    # `seen` removes the duplicates that repeated values create
    for mask in range(1, 1 << n):
        if not mask & 1 or mask == (1 << n) - 1:
            continue
        a = tuple(ms[i] for i in range(n) if mask >> i & 1)
        b = tuple(ms[i] for i in range(n) if not mask >> i & 1)
        key = (a, b) if a <= b else (b, a)
        if key not in seen:
            seen.add(key)
            yield key


def _combine_values(x: Fraction, y: Fraction) -> Iterator[Fraction]:
    yield x + y
    yield x - y
    yield y - x
    yield x * y
    if y:
        yield x / y
    if x:
        yield y / x


# Sub-multisets up to this size have every expression enumerated and cached (a few hundred
# strings each). Larger ones (hands of 5+ cards) are searched one target value at a time:
# enumerating every expression of 4 values costs ~10^4 strings per multiset.
_FULL = 3


def _sides(ms: tuple[int, ...]) -> Iterator[tuple[tuple[int, ...], tuple[int, ...]]]:
    """Each unordered split as (smaller part, larger part); the smaller has <= _FULL values
    for hands of up to 6 cards, so its value set is small and cached."""
    for a, b in _splits(ms):
        yield (a, b) if len(a) <= len(b) else (b, a)


# bounded: only the rare x = 0, t = 0 case asks for the values of a part larger than _FULL
@lru_cache(maxsize=1 << 14)
def _values(ms: tuple[int, ...]) -> frozenset[Fraction]:
    """Every value reachable from the sorted multiset `ms` (no strings: cheap)."""
    if len(ms) == 1:
        return frozenset((Fraction(ms[0]),))
    out: set[Fraction] = set()
    for a, b in _splits(ms):
        vb = _values(b)
        for x in _values(a):
            for y in vb:
                out.update(_combine_values(x, y))
    return frozenset(out)


@lru_cache(maxsize=1 << 12)
def _expressions(ms: tuple[int, ...]) -> dict[Fraction, dict[str, int]]:
    """value -> {formula text: top precedence} for every expression over the sorted `ms`.

    Only for small `ms` (<= _FULL values). Dicts keep insertion order, so the result is
    deterministic. Callers must not mutate it (it is cached).
    """
    if len(ms) == 1:
        return {Fraction(ms[0]): {str(ms[0]): _ATOM}}
    out: dict[Fraction, dict[str, int]] = {}

    def add(value: Fraction, expr: Expr) -> None:
        out.setdefault(value, {})[expr[0]] = expr[1]

    for a, b in _splits(ms):
        eb = _expressions(b)
        for x, xs in _expressions(a).items():
            for y, ys in eb.items():
                for l_expr in xs.items():
                    for r_expr in ys.items():
                        add(x + y, _render("+", l_expr, r_expr))
                        add(x + y, _render("+", r_expr, l_expr))
                        add(x * y, _render("*", l_expr, r_expr))
                        add(x * y, _render("*", r_expr, l_expr))
                        add(x - y, _render("-", l_expr, r_expr))
                        add(y - x, _render("-", r_expr, l_expr))
                        if y:
                            add(x / y, _render("/", l_expr, r_expr))
                        if x:
                            add(y / x, _render("/", r_expr, l_expr))
    return out


def _matches(
    x: Fraction, t: Fraction, part: tuple[int, ...]
) -> Iterator[tuple[str, Fraction, bool]]:
    """(op, y, x_on_left) for each value y of `part` with `x op y == t` or `y op x == t`.

    Meet in the middle: solve each of the six relations for y and test whether `part` reaches
    it, instead of pairing x with every value of `part`.
    """

    def hit(y: Fraction) -> bool:
        return _reaches(part, y)

    if hit(t - x):
        yield "+", t - x, True
        yield "+", t - x, False
    if hit(x - t):
        yield "-", x - t, True  # x - y = t
    if hit(x + t):
        yield "-", x + t, False  # y - x = t
    if x:
        if hit(t / x):
            yield "*", t / x, True
            yield "*", t / x, False
        if hit(t * x):
            yield "/", t * x, False  # y / x = t
        if t and hit(x / t):
            yield "/", x / t, True  # x / y = t (y = x / t is non-zero here)
    elif t == 0:
        # x = 0 and t = 0: x * y = 0 for every y, and 0 / y = 0 for every non-zero y
        for y in sorted(_values(part)):
            yield "*", y, True
            yield "*", y, False
            if y:
                yield "/", y, True


def _reaches(ms: tuple[int, ...], t: Fraction) -> bool:
    """Whether some expression over the sorted multiset `ms` equals t."""
    if len(ms) <= _FULL:
        return t in _values(ms)
    return _reaches_large(ms, t)


@lru_cache(maxsize=1 << 16)
def _reaches_large(ms: tuple[int, ...], t: Fraction) -> bool:
    return any(
        next(_matches(x, t, large), None) is not None
        for small, large in _sides(ms)
        for x in _values(small)
    )


def _targeted(ms: tuple[int, ...], t: Fraction) -> dict[str, int]:
    """{formula text: top precedence} for every expression over `ms` equal to t."""
    if len(ms) <= _FULL:
        return _expressions(ms).get(t, {})
    return _targeted_large(ms, t)


# bounded: a 5-card entry can hold thousands of strings
@lru_cache(maxsize=1 << 10)
def _targeted_large(ms: tuple[int, ...], t: Fraction) -> dict[str, int]:
    found: dict[str, int] = {}
    for small, large in _sides(ms):
        for x in _values(small):
            for op, y, x_left in _matches(x, t, large):
                y_exprs = _targeted(large, y)
                for x_expr in _targeted(small, x).items():
                    for y_expr in y_exprs.items():
                        pair = (x_expr, y_expr) if x_left else (y_expr, x_expr)
                        text, prec = _render(op, *pair)
                        found[text] = prec
    return found


def _solution_key(text: str) -> tuple[int, str]:
    # canonical order: fewest brackets first, then plain string order (deterministic)
    return text.count("("), text


@lru_cache(maxsize=1 << 10)
def _solutions(ms: tuple[int, ...], target: int) -> tuple[str, ...]:
    return tuple(sorted(_targeted(ms, Fraction(target)), key=_solution_key))


def _multiset(values: Sequence[int]) -> tuple[int, ...]:
    out = []
    for v in values:
        if isinstance(v, bool) or not isinstance(v, int):
            raise ValueError(f"card values must be integers, got {v!r}")
        out.append(v)
    if not out:
        raise ValueError("need at least one card value")
    return tuple(sorted(out))


def is_solvable(values: Sequence[int], target: int = 24) -> bool:
    """Whether some formula over the values (each exactly once) equals the target."""
    return _reaches(_multiset(values), Fraction(int(target)))


def solutions(values: Sequence[int], target: int = 24, limit: int | None = None) -> list[str]:
    """Distinct solution formulas, fewest brackets first then string order (deterministic).

    Depends only on the multiset of values, not on their order.
    """
    found = _solutions(_multiset(values), int(target))
    return list(found if limit is None else found[:limit])


def solve(values: Sequence[int], target: int = 24) -> str | None:
    """The canonical solution (first of `solutions`), or None if the hand is unsolvable."""
    ms = _multiset(values)
    if not _reaches(ms, Fraction(int(target))):
        return None
    return _solutions(ms, int(target))[0]


@lru_cache(maxsize=16)
def _table(low: int, high: int, n_cards: int, target: int) -> tuple[tuple, ...]:
    return tuple(
        (ms, _solutions(ms, target))
        for ms in combinations_with_replacement(range(low, high + 1), n_cards)
    )


def solvability_table(
    values_range: tuple[int, int] = (1, 13), n_cards: int = 4, target: int = 24
) -> dict[tuple[int, ...], list[str]]:
    """Every sorted value multiset over values_range (inclusive) -> its solutions ([] if none).

    Cached; each call returns a fresh dict, so callers may modify it.
    """
    low, high = values_range
    return {ms: list(sols) for ms, sols in _table(int(low), int(high), int(n_cards), int(target))}
