"""Bootstrap intervals of the metrics: seeded resampling, percentile intervals, the N for a target precision.

Percentile bootstrap (Efron & Tibshirani 1993, *An Introduction to the
Bootstrap*, Chapman & Hall, ch. 13): draw B resamples with replacement, compute
the statistic θ*_b on each, and report the 95% interval

    [ q_0.025(θ*_1..B),  q_0.975(θ*_1..B) ]

(``np.quantile``, linear interpolation).  Two resampling units:

* ``"prompts"`` (per-image metrics: CLIP score, compositional accuracy): images
  are nested in prompts and are not independent, so whole prompts are resampled
  (a cluster bootstrap): P prompts drawn with replacement, each bringing all its
  images.  With counts c_p (multinomial(P, 1/P)), the resampled mean is

      θ* = Σ_p c_p S_p / Σ_p c_p n_p,   S_p = sum of prompt p's values, n_p = its images

  (``prompt_bootstrap_means``: no per-resample DataFrame work).
* ``"generated"`` (set metrics: FD, KID, CMMD, precision/recall): the rows of the
  generated set are resampled, the reference held fixed.  A resample is a count
  vector c over the N rows (multinomial(N, 1/N)), which lets each metric update
  sums in place of recomputing (``generated_counts``); features are never re-embedded.

The resampling is seeded (``np.random.default_rng(seed)``), so a seed gives
identical intervals.  ``n_for_target`` extrapolates the N at which the interval's
half-width h is a fraction ``target`` of |value|, with h ∝ 1/sqrt(N):

    N_target = N · (h / (target · |value|))²      (NaN when value is 0 or h is NaN)

Numbers only (numpy), so the dashboard may import it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Sequence

import numpy as np

if TYPE_CHECKING:  # pragma: no cover
    from bench.metrics.base import MetricResult, ScoreGroup

#: Two-sided 95% percentile interval.
LEVEL = 0.95


@dataclass(frozen=True)
class Bootstrap:
    """The settings of one score's intervals: ``resamples`` (0 = off) and the ``seed``."""

    resamples: int = 1000
    seed: int = 0

    def rng(self, *salt: int) -> np.random.Generator:
        """A fresh generator per (group, metric): seeded only by ``seed`` and ``salt``, not by call order."""
        return np.random.default_rng([self.seed, *salt])


@dataclass(frozen=True)
class Interval:
    """A 95% interval of a metric's value, how it was made, and the N at which it would be ±1%."""

    low: float
    high: float
    method: str
    n_for_1pct: float = math.nan

    def to_row(self) -> dict:
        return {"ci_low": float(self.low), "ci_high": float(self.high), "ci_method": self.method,
                "n_for_1pct": float(self.n_for_1pct)}


def percentile_interval(stats: np.ndarray, level: float = LEVEL) -> tuple[float, float]:
    """The percentile interval of bootstrap statistics (NaN where a statistic is NaN)."""
    stats = np.asarray(stats, dtype=np.float64)
    if len(stats) == 0 or not np.isfinite(stats).all():
        return math.nan, math.nan
    alpha = (1 - level) / 2
    lo, hi = np.quantile(stats, [alpha, 1 - alpha])
    return float(lo), float(hi)


def n_for_target(half_width: float, value: float, n: float, target: float = 0.01) -> float:
    """N · (half_width / (target · |value|))²: the N at which the half-width is ``target`` · |value|."""
    if not (math.isfinite(half_width) and math.isfinite(value) and math.isfinite(n)) or value == 0 or n <= 0:
        return math.nan
    return float(n * (half_width / (target * abs(value))) ** 2)


def make_interval(stats: np.ndarray, value: float, n: float, method: str) -> Interval:
    lo, hi = percentile_interval(stats)
    return Interval(lo, hi, method, n_for_target((hi - lo) / 2, value, n))


def resample_indices(rng: np.random.Generator, n: int, resamples: int) -> np.ndarray:
    """[resamples, n] row indices drawn with replacement."""
    return rng.integers(0, n, size=(resamples, n))


def counts_of(indices: np.ndarray, n: int) -> np.ndarray:
    """[resamples, n] counts of each row in each resample (float64), from ``resample_indices``."""
    b = indices.shape[0]
    flat = (np.arange(b)[:, None] * n + indices).ravel()
    return np.bincount(flat, minlength=b * n).reshape(b, n).astype(np.float64)


def generated_counts(rng: np.random.Generator, n: int, resamples: int) -> np.ndarray:
    """Counts of the generated rows in each resample: [resamples, n], each row summing to n."""
    return counts_of(resample_indices(rng, n, resamples), n)


def prompt_bootstrap_means(values: np.ndarray, prompts: Sequence, rng: np.random.Generator,
                           resamples: int) -> np.ndarray:
    """Means of ``values`` (one per image) over ``resamples`` cluster resamples of the prompts (see module doc)."""
    values = np.asarray(values, dtype=np.float64)
    codes, _ = _codes(prompts)
    n_prompts = int(codes.max()) + 1
    sums = np.bincount(codes, weights=values, minlength=n_prompts)
    sizes = np.bincount(codes, minlength=n_prompts).astype(np.float64)
    c = counts_of(resample_indices(rng, n_prompts, resamples), n_prompts)
    return (c @ sums) / (c @ sizes)


def _codes(labels: Sequence) -> tuple[np.ndarray, list]:
    uniq = list(dict.fromkeys(labels))
    pos = {u: i for i, u in enumerate(uniq)}
    return np.array([pos[x] for x in labels], dtype=np.int64), uniq


def prompts_method(resamples: int, seed: int) -> str:
    return f"percentile bootstrap over prompts, images nested ({resamples} resamples, seed {seed})"


def generated_method(resamples: int, seed: int, note: str = "") -> str:
    extra = f"; {note}" if note else ""
    return f"percentile bootstrap over generated images, reference fixed ({resamples} resamples, seed {seed}{extra})"


def prompt_intervals(group: "ScoreGroup", results: Sequence["MetricResult"], boot: Bootstrap,
                     rng: np.random.Generator) -> list[Interval | None]:
    """The interval of every result that carries per-image ``values`` and their ``prompts`` (a ``Metric.interval``).

    Each result (the overall row and each category row) is resampled on its own images' prompts.
    """
    out: list[Interval | None] = []
    for r in results:
        if r.values is None or r.prompts is None or len(r.values) == 0:
            out.append(None)
            continue
        means = prompt_bootstrap_means(r.values, r.prompts, rng, boot.resamples)
        out.append(make_interval(means, r.value, r.n, prompts_method(boot.resamples, boot.seed)))
    return out
