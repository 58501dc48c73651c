"""The report's interval on a difference of pooled shares between runs.

(Rates and their differences use ``bench.intervals``: Wilson and Newcombe.)

* ``cluster_bootstrap_diff``: the difference of two pooled shares (sum k / sum n over
  clusters, e.g. prompts) with a percentile bootstrap that resamples the clusters of each
  run independently; images of one prompt are not independent draws, prompts are.

Numbers only (numpy); no plotting, no I/O.
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np

BOOTSTRAP_RESAMPLES = 2000
BOOTSTRAP_SEED = 0
CLUSTER_BOOTSTRAP = (f"percentile bootstrap 95% over prompts ({BOOTSTRAP_RESAMPLES} resamples per run, "
                     f"seed {BOOTSTRAP_SEED})")


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
