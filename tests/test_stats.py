import math

import numpy as np
import pytest

from sftrl.stats import proportion, recovery, recovery_interval, wilson_interval


def quadratic_wilson(k: int, n: int, z: float) -> tuple[float, float]:
    """Reference: the Wilson bounds are the roots p of (k/n - p)^2 = z^2 p (1 - p) / n."""
    phat = k / n
    a = 1 + z * z / n
    b = -(2 * phat + z * z / n)
    c = phat * phat
    disc = math.sqrt(b * b - 4 * a * c)
    return ((-b - disc) / (2 * a), (-b + disc) / (2 * a))


@pytest.mark.parametrize(
    "k, n, expected",
    [
        # hand values at z = 1.96 (4 decimals)
        (0, 10, (0.0, 0.2775)),
        (5, 10, (0.2366, 0.7634)),
        (10, 10, (0.7225, 1.0)),
        (81, 263, (0.2553, 0.3662)),  # p=0.30798, center 0.31075, half 0.05546
    ],
)
def test_wilson_known_values(k, n, expected):
    low, high = wilson_interval(k, n)
    assert low == pytest.approx(expected[0], abs=1e-4)
    assert high == pytest.approx(expected[1], abs=1e-4)


@pytest.mark.parametrize(
    "k, n", [(0, 10), (1, 10), (5, 10), (9, 10), (10, 10), (81, 263), (3, 400), (399, 400)]
)
@pytest.mark.parametrize("z", [1.0, 1.96, 2.576])
def test_wilson_matches_quadratic_roots(k, n, z):
    ref = quadratic_wilson(k, n, z)
    got = wilson_interval(k, n, z)
    assert got == pytest.approx(ref, abs=1e-12)


def test_wilson_matches_scipy():
    stats = pytest.importorskip("scipy.stats")
    z = float(stats.norm.ppf(0.975))
    for k, n in [(0, 10), (5, 10), (10, 10), (81, 263), (17, 234)]:
        ci = stats.binomtest(k, n).proportion_ci(confidence_level=0.95, method="wilson")
        assert wilson_interval(k, n, z) == pytest.approx((ci.low, ci.high), abs=1e-9)


def test_wilson_edges():
    assert wilson_interval(0, 0) == (0.0, 1.0)
    assert wilson_interval(0, 5)[0] == 0.0
    assert wilson_interval(5, 5)[1] == 1.0
    with pytest.raises(ValueError):
        wilson_interval(6, 5)
    with pytest.raises(ValueError):
        wilson_interval(-1, 5)


def test_proportion_dict():
    p = proportion(5, 10)
    assert p["rate"] == 0.5 and p["successes"] == 5 and p["n"] == 10
    assert p["low"] < 0.5 < p["high"]
    assert proportion(0, 0)["rate"] is None


def test_recovery_point():
    assert recovery(0.15, 0.09, 0.175) == pytest.approx(0.06 / 0.085)
    assert math.isnan(recovery(0.1, 0.2, 0.2))


def test_recovery_interval_paired():
    rng = np.random.default_rng(1)
    n = 400
    donor = (rng.random(n) < 0.18).astype(int)
    recipient = donor * (rng.random(n) < 0.5)  # loses half of the donor's successes
    after = np.maximum(recipient, donor * (rng.random(n) < 0.7))  # gets most of them back
    res = recovery_interval(after, recipient, donor, n_boot=1000, seed=3)
    expected = (after.mean() - recipient.mean()) / (donor.mean() - recipient.mean())
    assert res["estimate"] == pytest.approx(expected)
    assert res["low"] <= res["estimate"] <= res["high"]
    assert res["n_valid"] == 1000 and res["paired"] is True
    assert res["gap_low"] > 0
    # deterministic given the seed
    assert recovery_interval(after, recipient, donor, n_boot=1000, seed=3) == res
    # pairing keeps the correlation: narrower than resampling the three models independently
    unpaired = recovery_interval(after, recipient, donor, n_boot=1000, seed=3, paired=False)
    assert (res["high"] - res["low"]) < (unpaired["high"] - unpaired["low"])


def test_recovery_interval_degenerate_and_errors():
    same = [1, 0, 1, 0]
    res = recovery_interval([1, 1, 0, 0], same, same, n_boot=50)
    assert res["estimate"] is None and res["n_valid"] == 0 and res["low"] is None
    with pytest.raises(ValueError):
        recovery_interval([1, 0], [1, 0, 1], [0, 1])
    res = recovery_interval([1, 0], [0, 0, 0], [1, 1, 1, 1], paired=False, n_boot=50)
    assert res["estimate"] == pytest.approx(0.5)


def test_replicated_interval_covers_seeds_and_hands():
    from sftrl.stats import replicated_interval

    rng = np.random.default_rng(0)
    hands = 234

    def rep(after_rate):
        return {
            "after": (rng.random(hands) < after_rate).astype(float),
            "recipient": (rng.random(hands) < 0.05).astype(float),
            "donor": (rng.random(hands) < 0.25).astype(float),
        }

    alike = replicated_interval([rep(0.15) for _ in range(3)], n_boot=500)
    apart = replicated_interval([rep(r) for r in (0.05, 0.15, 0.30)], n_boot=500)
    assert alike["replicates"] == 3
    assert alike["recipient"] < alike["after"] < alike["donor"]
    # seeds that disagree widen the interval beyond what the hands alone give
    width = lambda s: s["after_high"] - s["after_low"]  # noqa: E731
    assert width(apart) > 1.5 * width(alike)
    assert apart["recovery_low"] < apart["recovery"] < apart["recovery_high"]
    assert apart["diff"] == pytest.approx(apart["after"] - apart["recipient"])
    single = replicated_interval([rep(0.15)], n_boot=500)
    assert single["replicates"] == 1 and single["after_low"] < single["after_high"]
