"""Intervals on proportions, shared by every probe, the report and the dashboard.

* ``wilson``: the Wilson score interval of a proportion k/n (Wilson 1927,
  "Probable inference, the law of succession, and statistical inference", JASA):

      centre = (p + z²/2n) / (1 + z²/n),   half = z·sqrt(p(1-p)/n + z²/4n²) / (1 + z²/n)

  with exact ends 0 at k = 0 and 1 at k = n (rounding would leave 1e-17).
  ``wilson_interval`` is the same on arrays (broadcast; NaN where n = 0).
* ``newcombe_diff``: p1 - p2 of two independent proportions with Newcombe's hybrid
  score interval (Newcombe 1998, Statistics in Medicine 17, method 10):

      lower = d - sqrt((p1 - l1)² + (u2 - p2)²),   upper = d + sqrt((u1 - p1)² + (p2 - l2)²)

Numbers only; the stdlib and numpy, so the dashboard may import it too.
"""

from __future__ import annotations

import math

import numpy as np

#: The 97.5% standard normal quantile: two-sided 95% intervals.
Z95 = 1.959963984540054
WILSON = "Wilson score 95%"
NEWCOMBE = "Newcombe hybrid score 95% (method 10), images treated as independent"


def wilson_interval(k, n, z: float = Z95) -> tuple[np.ndarray, np.ndarray]:
    """The Wilson score interval of k successes of n, on arrays (broadcast); NaN where n == 0."""
    k = np.asarray(k, dtype=np.float64)
    n = np.asarray(n, dtype=np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        p = k / n
        denom = 1.0 + z * z / n
        centre = (p + z * z / (2 * n)) / denom
        half = z * np.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    lo = np.where(k == 0, 0.0, np.clip(centre - half, 0.0, 1.0))
    hi = np.where(k == n, 1.0, np.clip(centre + half, 0.0, 1.0))
    bad = n <= 0
    return np.where(bad, np.nan, lo), np.where(bad, np.nan, hi)


def wilson(k: int, n: int, z: float = Z95) -> tuple[float, float]:
    """The Wilson score interval of ``k`` successes in ``n`` trials; (nan, nan) when n is 0."""
    if n <= 0:
        return math.nan, math.nan
    if not 0 <= k <= n:
        raise ValueError(f"wilson: need 0 <= k <= n, got k={k}, n={n}")
    lo, hi = wilson_interval(k, n, z)
    return float(lo), float(hi)


def newcombe_diff(k1: int, n1: int, k2: int, n2: int, z: float = Z95) -> tuple[float, float, float]:
    """p1 - p2 and its Newcombe hybrid score interval; nan when either n is 0."""
    if n1 <= 0 or n2 <= 0:
        return math.nan, math.nan, math.nan
    p1, p2 = k1 / n1, k2 / n2
    l1, u1 = wilson(k1, n1, z)
    l2, u2 = wilson(k2, n2, z)
    d = p1 - p2
    return d, d - math.sqrt((p1 - l1) ** 2 + (u2 - p2) ** 2), d + math.sqrt((u1 - p1) ** 2 + (p2 - l2) ** 2)


def error_bars(values, low, high) -> np.ndarray:
    """matplotlib's asymmetric ``yerr`` (2 x rows) from values and interval bounds; never negative (a biased
    statistic's value may lie outside its percentile interval) and 0 where a bound is missing."""
    values = np.asarray(values, dtype=float)
    lower = (values - np.asarray(low, dtype=float)).clip(min=0)
    upper = (np.asarray(high, dtype=float) - values).clip(min=0)
    return np.nan_to_num(np.vstack([lower, upper]), nan=0.0)
