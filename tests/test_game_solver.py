"""Tests for sftrl.game.solver: published counts, exactness, determinism, speed."""

from __future__ import annotations

import itertools
import random
import time
from collections import Counter
from fractions import Fraction

import pytest

from sftrl.game import evaluate_formula, is_solvable, solutions, solvability_table, solve
from sftrl.game import solver as solver_mod


def _recheck(formula: str, ms: tuple[int, ...], target: int) -> None:
    result = evaluate_formula(formula)
    assert result.ok, (formula, result.error)
    assert result.value == target, formula
    assert sorted(result.numbers) == list(ms), formula


def test_published_counts_over_1_to_10_and_1_to_13():
    t10 = solvability_table((1, 10))
    t13 = solvability_table((1, 13))
    assert (len(t10), sum(bool(s) for s in t10.values())) == (715, 566)
    assert (len(t13), sum(bool(s) for s in t13.values())) == (1820, 1362)


@pytest.mark.parametrize("values_range", [(1, 10), (1, 13)])
def test_every_table_solution_rechecks_exactly(values_range):
    for ms, sols in solvability_table(values_range).items():
        assert list(ms) == sorted(ms)
        assert len(sols) == len(set(sols))
        assert bool(sols) == is_solvable(ms, 24)
        for formula in sols:
            _recheck(formula, ms, 24)


def test_table_is_cached_but_returns_fresh_dicts():
    a = solvability_table((1, 10))
    a[(1, 1, 1, 1)].append("junk")
    a.clear()
    b = solvability_table((1, 10))
    assert len(b) == 715 and "junk" not in b[(1, 1, 1, 1)]


def _clear_solver_caches() -> None:
    for obj in vars(solver_mod).values():
        if hasattr(obj, "cache_clear"):
            obj.cache_clear()


def test_table_takes_seconds_from_a_cold_cache():
    _clear_solver_caches()
    start = time.process_time()
    solvability_table((1, 13))
    assert time.process_time() - start < 20  # ~0.7 s of CPU


def test_targeted_search_agrees_with_full_enumeration(monkeypatch):
    """Multisets larger than _FULL (5-card hands) take the targeted path: force it for
    3- and 4-value multisets and compare with full enumeration."""
    rng = random.Random(4)
    sample = [tuple(sorted(rng.randint(1, 13) for _ in range(4))) for _ in range(25)]
    sample += [(3, 3, 8, 8), (1, 5, 5, 5), (6, 6, 6, 6), (0, 0, 5, 5)]
    expected = {ms: (solutions(ms), is_solvable(ms)) for ms in sample}
    expected_zero = solutions((0, 0, 5, 5), 0)
    _clear_solver_caches()
    monkeypatch.setattr(solver_mod, "_FULL", 1)
    try:
        for ms, (sols, solvable) in expected.items():
            assert (solutions(ms), is_solvable(ms)) == (sols, solvable), ms
        assert solutions((0, 0, 5, 5), 0) == expected_zero
    finally:
        _clear_solver_caches()


def test_probability_of_a_solvable_iid_hand_by_exact_enumeration():
    """Over all 13^4 ordered hands of uniform labels: ~0.731 (ID), ~0.792 (J/Q/K=11/12/13)."""
    table = solvability_table((1, 13))
    solvable = {ms for ms, sols in table.items() if sols}
    n_id = n_ood = 0
    for ranks in itertools.product(range(1, 14), repeat=4):
        n_ood += tuple(sorted(ranks)) in solvable
        n_id += tuple(sorted(min(r, 10) for r in ranks)) in solvable
    p_id, p_ood = Fraction(n_id, 13**4), Fraction(n_ood, 13**4)
    assert abs(float(p_id) - 0.731) < 0.001
    assert abs(float(p_ood) - 0.792) < 0.001


def test_known_hands():
    assert solve([8, 3, 8, 3]) == "8 / ( 3 - 8 / 3 )"  # needs fractions
    assert solve([1, 1, 1, 1]) is None
    assert not is_solvable([1, 1, 1, 1])
    assert solutions([1, 1, 1, 1]) == []
    assert "( 10 - 4 ) * ( 2 + 2 )" in solutions([10, 4, 2, 2])
    assert is_solvable([24]) and solve([24]) == "24"
    assert solve([5, 5], 0) in ("5 - 5", "5 - 5")  # target 0 works too


def test_solutions_depend_only_on_the_multiset_and_are_ordered():
    sols = solutions([2, 10, 4, 2])
    assert sols == solutions([10, 4, 2, 2]) == solutions((2, 2, 4, 10))
    assert sols == sorted(sols, key=lambda s: (s.count("("), s))
    assert solve([2, 10, 4, 2]) == sols[0]
    assert solutions([10, 4, 2, 2], limit=3) == sols[:3]


def _brute_force(values: list[int], target: int) -> set[str]:
    """Independent enumeration: repeatedly merge any ordered pair (every order, bracketing)."""
    found: set[str] = set()

    def walk(items: list[tuple[Fraction, solver_mod.Expr]]) -> None:
        if len(items) == 1:
            if items[0][0] == target:
                found.add(items[0][1][0])
            return
        for i, j in itertools.permutations(range(len(items)), 2):
            (x, ex), (y, ey) = items[i], items[j]
            rest = [items[k] for k in range(len(items)) if k not in (i, j)]
            for op in "+-*/":
                if op == "/" and y == 0:
                    continue
                value = {"+": x + y, "-": x - y, "*": x * y, "/": x / y if y else 0}[op]
                walk(rest + [(value, solver_mod._render(op, ex, ey))])

    walk([(Fraction(v), (str(v), 3)) for v in values])
    return found


@pytest.mark.parametrize(
    ("values", "target"),
    [
        ([10, 4, 2, 2], 24),
        ([8, 3, 8, 3], 24),
        ([1, 5, 5, 5], 24),
        ([13, 12, 11, 1], 24),
        ([6, 6, 6, 6], 24),
        ([3, 4, 6], 18),
        ([7, 7, 1, 1], 18),
    ],
)
def test_solutions_equal_brute_force_enumeration(values, target):
    assert set(solutions(values, target)) == _brute_force(values, target)


def _brute_force_solvable(values: list[Fraction], target: int) -> bool:
    if len(values) == 1:
        return values[0] == target
    for i, j in itertools.combinations(range(len(values)), 2):
        x, y = values[i], values[j]
        rest = [values[k] for k in range(len(values)) if k not in (i, j)]
        merged = [x + y, x - y, y - x, x * y] + ([x / y] if y else []) + ([y / x] if x else [])
        if any(_brute_force_solvable(rest + [m], target) for m in merged):
            return True
    return False


def test_is_solvable_agrees_with_brute_force_on_random_multisets():
    rng = random.Random(1)
    for _ in range(60):
        values = [rng.randint(1, 13) for _ in range(4)]
        expected = _brute_force_solvable([Fraction(v) for v in values], 24)
        assert is_solvable(values, 24) == expected


def test_other_targets_and_five_cards():
    t18 = solvability_table((1, 10), n_cards=3, target=18)
    assert len(t18) == 220 and any(t18.values())
    for ms, sols in t18.items():
        for formula in sols:
            _recheck(formula, ms, 18)
    assert solve([3, 4, 6, 10], 30) is None
    for target in (10, 12, 36):
        formula = solve([3, 4, 6, 10], target)
        assert formula is not None
        _recheck(formula, (3, 4, 6, 10), target)
    five = solutions([1, 2, 3, 4, 5], 30)
    assert five and all(evaluate_formula(f).value == 30 for f in five[:100])
    assert Counter(evaluate_formula(five[0]).numbers) == Counter([1, 2, 3, 4, 5])


def test_rejects_non_integer_values():
    with pytest.raises(ValueError):
        solve([1.5, 2, 3, 4])
    with pytest.raises(ValueError):
        solve([])
