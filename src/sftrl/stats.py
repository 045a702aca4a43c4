"""Small statistics helpers: Wilson intervals for success rates, a recovery ratio with a
bootstrap interval.

Only numpy and the standard library: this module is imported by evaluation, surgery and the
figures, and must stay cheap to import.

Recovery
--------
The surgery and RL stages report how much of a lost success rate a treatment brings back::

    recovery = (a - r) / (d - r)

with ``r`` the rate of the damaged model the treatment starts from (the recipient, e.g. the end of
SFT), ``d`` the rate of the reference it should get back to (the donor, e.g. the early-peak SFT
checkpoint) and ``a`` the rate after the treatment. 0 means nothing recovered, 1 means fully
recovered; values below 0 or above 1 are possible and are reported as they are.

The interval is a percentile bootstrap over evaluation items. When the three models were
evaluated on the same hands in the same order (the normal case: one data artifact), the
resampling is *paired*: one set of item indices is drawn per replicate and applied to all three
outcome vectors, which keeps the strong item-level correlation between models and gives a much
narrower (and correct) interval than resampling each model independently. Replicates whose
denominator ``d - r`` is zero are dropped; their count is reported (``n_valid``). When the gap
``d - r`` itself has an interval that reaches 0, the ratio is ill-determined and its interval is
wide or unbounded: read ``gap`` alongside the ratio.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

__all__ = [
    "wilson_interval",
    "proportion",
    "recovery",
    "recovery_interval",
    "replicated_interval",
]


def wilson_interval(successes: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """Wilson score interval for a binomial proportion ``successes / n``.

    ``n == 0`` gives the uninformative ``(0.0, 1.0)``. The bounds are exactly 0 when there is no
    success and exactly 1 when every trial succeeded.
    """
    if n < 0 or successes < 0 or successes > n:
        raise ValueError(f"need 0 <= successes <= n, got successes={successes}, n={n}")
    if n == 0:
        return (0.0, 1.0)
    p = successes / n
    z2 = z * z
    denom = 1.0 + z2 / n
    center = (p + z2 / (2.0 * n)) / denom
    half = z * math.sqrt(p * (1.0 - p) / n + z2 / (4.0 * n * n)) / denom
    low = 0.0 if successes == 0 else max(0.0, center - half)
    high = 1.0 if successes == n else min(1.0, center + half)
    return (low, high)


def proportion(successes: int, n: int, z: float = 1.96) -> dict:
    """A success rate with its Wilson interval, as a JSON-ready dict.

    ``rate`` is ``None`` when ``n == 0`` (no items: no rate, and the interval is (0, 1)).
    """
    low, high = wilson_interval(successes, n, z)
    return {
        "successes": int(successes),
        "n": int(n),
        "rate": (successes / n) if n else None,
        "low": low,
        "high": high,
    }


def recovery(after: float, recipient: float, donor: float) -> float:
    """``(after - recipient) / (donor - recipient)``; NaN when donor == recipient."""
    gap = donor - recipient
    if gap == 0:
        return float("nan")
    return (after - recipient) / gap


def _as_outcomes(values: Sequence[float] | np.ndarray, name: str) -> np.ndarray:
    arr = np.asarray(values, dtype=float)
    if arr.ndim != 1 or arr.size == 0:
        raise ValueError(f"{name}: need a non-empty 1-D sequence of per-item outcomes")
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name}: outcomes must be finite")
    return arr


def recovery_interval(
    after: Sequence[float] | np.ndarray,
    recipient: Sequence[float] | np.ndarray,
    donor: Sequence[float] | np.ndarray,
    *,
    paired: bool = True,
    n_boot: int = 2000,
    level: float = 0.95,
    seed: int = 0,
) -> dict:
    """Recovery ``(a - r) / (d - r)`` from per-item outcomes, with a percentile bootstrap interval.

    Each argument holds one outcome per evaluation item (0/1 success, or any per-item score such
    as the reward: the rate is the mean). With ``paired=True`` (default) the three vectors must be
    aligned item by item (same hands, same order) and one set of indices is resampled for all of
    them; with ``paired=False`` each vector is resampled on its own (lengths may differ).

    Returns a JSON-ready dict (no NaN: undefined values are ``None``): ``estimate`` (the point
    ratio on the full data; ``None`` if d == r), ``low``/``high`` (percentile interval at
    ``level``; ``None`` if fewer than 2 valid replicates), the three rates,
    ``gap`` (d - r) with its own interval, ``n_boot``, ``n_valid`` (replicates with a non-zero
    gap), ``level``, ``seed``, ``paired`` and ``method``.
    """
    a = _as_outcomes(after, "after")
    r = _as_outcomes(recipient, "recipient")
    d = _as_outcomes(donor, "donor")
    if paired and not (a.size == r.size == d.size):
        raise ValueError(
            f"paired bootstrap needs aligned items, got sizes {a.size}, {r.size}, {d.size}"
        )
    if not 0.0 < level < 1.0:
        raise ValueError(f"level must lie in (0, 1), got {level}")
    if n_boot < 1:
        raise ValueError(f"n_boot must be >= 1, got {n_boot}")

    rng = np.random.default_rng(seed)
    if paired:
        idx = rng.integers(0, a.size, size=(n_boot, a.size))
        a_b, r_b, d_b = a[idx].mean(axis=1), r[idx].mean(axis=1), d[idx].mean(axis=1)
    else:
        a_b = a[rng.integers(0, a.size, size=(n_boot, a.size))].mean(axis=1)
        r_b = r[rng.integers(0, r.size, size=(n_boot, r.size))].mean(axis=1)
        d_b = d[rng.integers(0, d.size, size=(n_boot, d.size))].mean(axis=1)

    gap_b = d_b - r_b
    valid = gap_b != 0
    ratios = (a_b[valid] - r_b[valid]) / gap_b[valid]
    tail = (1.0 - level) / 2.0
    low: float | None = None
    high: float | None = None
    if ratios.size >= 2:
        low, high = (float(x) for x in np.quantile(ratios, [tail, 1.0 - tail]))
    gap_low, gap_high = (float(x) for x in np.quantile(gap_b, [tail, 1.0 - tail]))

    a_m, r_m, d_m = float(a.mean()), float(r.mean()), float(d.mean())
    estimate = recovery(a_m, r_m, d_m)
    return {
        "estimate": None if math.isnan(estimate) else estimate,
        "low": low,
        "high": high,
        "after": a_m,
        "recipient": r_m,
        "donor": d_m,
        "gap": d_m - r_m,
        "gap_low": gap_low,
        "gap_high": gap_high,
        "n_boot": int(n_boot),
        "n_valid": int(valid.sum()),
        "level": float(level),
        "seed": int(seed),
        "paired": bool(paired),
        "method": "percentile bootstrap over items",
    }


def replicated_interval(
    replicates: Sequence[dict[str, np.ndarray]],
    *,
    n_boot: int = 2000,
    level: float = 0.95,
    seed: int = 0,
) -> dict:
    """Across-replicate means of ``after``, ``after - recipient`` and the recovery, with a
    two-level percentile bootstrap: replicates (seeds) drawn with replacement, then items
    (hands) drawn within each, paired across the three models of that replicate.

    ``replicates`` holds one ``{"after", "recipient", "donor"}`` dict of aligned per-item
    outcomes per seed. Rates are means over a replicate's items, then over replicates; the
    recovery is the ratio of those means. One replicate gives the item bootstrap alone.
    """
    reps = [
        {k: _as_outcomes(r[k], f"replicate {i} {k}") for k in ("after", "recipient", "donor")}
        for i, r in enumerate(replicates)
    ]
    if not reps:
        raise ValueError("need at least one replicate")
    rng = np.random.default_rng(seed)
    boot = np.empty((n_boot, 3))
    for b in range(n_boot):
        chosen = rng.integers(0, len(reps), size=len(reps)) if len(reps) > 1 else [0]
        sums = np.zeros(3)
        for i in chosen:
            rep = reps[i]
            idx = rng.integers(0, rep["after"].size, size=rep["after"].size)
            sums += [rep[k][idx].mean() for k in ("after", "recipient", "donor")]
        boot[b] = sums / len(chosen)
    a_b, r_b, d_b = boot.T
    gap_b = d_b - r_b
    valid = gap_b != 0
    tail = (1.0 - level) / 2.0

    def interval(values: np.ndarray) -> tuple[float | None, float | None]:
        if values.size < 2:
            return None, None
        low, high = np.quantile(values, [tail, 1.0 - tail])
        return float(low), float(high)

    a_m, r_m, d_m = (
        float(np.mean([rep[k].mean() for rep in reps])) for k in ("after", "recipient", "donor")
    )
    estimate = recovery(a_m, r_m, d_m)
    after_low, after_high = interval(a_b)
    diff_low, diff_high = interval(a_b - r_b)
    rec_low, rec_high = interval((a_b[valid] - r_b[valid]) / gap_b[valid])
    return {
        "replicates": len(reps),
        "after": a_m,
        "after_low": after_low,
        "after_high": after_high,
        "recipient": r_m,
        "donor": d_m,
        "diff": a_m - r_m,
        "diff_low": diff_low,
        "diff_high": diff_high,
        "recovery": None if math.isnan(estimate) else estimate,
        "recovery_low": rec_low,
        "recovery_high": rec_high,
        "n_valid": int(valid.sum()),
        "method": "two-level percentile bootstrap: seeds, then hands (paired)",
    }
