"""The intervals the report puts on every rate it shows, and on the differences between runs.

* ``wilson``: the Wilson score interval of a proportion k/n (Wilson 1927), the one the
  report uses for every rate made from counts (images flagged of images judged).
* ``newcombe_diff``: the difference p1 - p2 of two independent proportions with
  Newcombe's hybrid score interval (Newcombe 1998, method 10), built from the two Wilson
  intervals:

      lower = d - sqrt((p1 - l1)^2 + (u2 - p2)^2)
      upper = d + sqrt((u1 - p1)^2 + (p2 - l2)^2)

* ``cluster_bootstrap_diff``: the difference of two pooled shares (sum k / sum n over
  clusters, e.g. prompts) with a percentile bootstrap that resamples the clusters of each
  run independently; images of one prompt are not independent draws, prompts are.

Numbers only (numpy); no plotting, no I/O.
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np

Z95 = 1.959963984540054
BOOTSTRAP_RESAMPLES = 2000
BOOTSTRAP_SEED = 0
WILSON = "Wilson score 95%"
NEWCOMBE = "Newcombe hybrid score 95% (method 10), images treated as independent"
CLUSTER_BOOTSTRAP = (f"percentile bootstrap 95% over prompts ({BOOTSTRAP_RESAMPLES} resamples per run, "
                     f"seed {BOOTSTRAP_SEED})")


def wilson(k: int, n: int, z: float = Z95) -> tuple[float, float]:
    """The Wilson score interval of k successes in n trials; (nan, nan) when n is 0."""
    if n <= 0:
        return math.nan, math.nan
    if not 0 <= k <= n:
        raise ValueError(f"wilson: need 0 <= k <= n, got k={k}, n={n}")
    p = k / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    # the bounds are exactly 0 at k = 0 and 1 at k = n (rounding would leave 1e-17)
    return (0.0 if k == 0 else max(0.0, centre - half)), (1.0 if k == n else min(1.0, centre + half))


def newcombe_diff(k1: int, n1: int, k2: int, n2: int, z: float = Z95) -> tuple[float, float, float]:
    """p1 - p2 and its Newcombe hybrid score interval; nan when either n is 0."""
    if n1 <= 0 or n2 <= 0:
        return math.nan, math.nan, math.nan
    p1, p2 = k1 / n1, k2 / n2
    l1, u1 = wilson(k1, n1, z)
    l2, u2 = wilson(k2, n2, z)
    d = p1 - p2
    return d, d - math.sqrt((p1 - l1) ** 2 + (u2 - p2) ** 2), d + math.sqrt((u1 - p1) ** 2 + (p2 - l2) ** 2)


def _pooled(n: np.ndarray, k: np.ndarray, idx: np.ndarray) -> np.ndarray:
    tot = n[idx].sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(tot > 0, k[idx].sum(axis=1) / np.maximum(tot, 1), np.nan)


def cluster_bootstrap_diff(n1: Sequence[int], k1: Sequence[int], n2: Sequence[int], k2: Sequence[int],
                           resamples: int = BOOTSTRAP_RESAMPLES, seed: int = BOOTSTRAP_SEED,
                           ) -> tuple[float, float, float]:
    """Pooled share sum(k1)/sum(n1) minus sum(k2)/sum(n2), with a percentile bootstrap 95% interval
    resampling each side's clusters (rows) with replacement; nan when a side has no trials."""
    a_n, a_k = np.asarray(n1, dtype=float), np.asarray(k1, dtype=float)
    b_n, b_k = np.asarray(n2, dtype=float), np.asarray(k2, dtype=float)
    if a_n.sum() <= 0 or b_n.sum() <= 0:
        return math.nan, math.nan, math.nan
    d = a_k.sum() / a_n.sum() - b_k.sum() / b_n.sum()
    rng = np.random.default_rng(seed)
    ia = rng.integers(0, len(a_n), size=(resamples, len(a_n)))
    ib = rng.integers(0, len(b_n), size=(resamples, len(b_n)))
    diffs = _pooled(a_n, a_k, ia) - _pooled(b_n, b_k, ib)
    diffs = diffs[np.isfinite(diffs)]
    if diffs.size == 0:
        return d, math.nan, math.nan
    lo, hi = np.quantile(diffs, [0.025, 0.975])
    return float(d), float(lo), float(hi)
