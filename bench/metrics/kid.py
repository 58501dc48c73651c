"""Kernel Inception Distance (KID).

Bińkowski, Sutherland, Arbel, Gretton 2018, "Demystifying MMD GANs", ICLR.

Unbiased estimate of the squared MMD with the cubic polynomial kernel

    k(x, y) = (x·y / d + 1)^3

on m-sample subsets X (generated) and Y (reference):

    MMD²_u = 1/(m(m-1)) Σ_{i≠j} k(x_i, x_j) + 1/(m(m-1)) Σ_{i≠j} k(y_i, y_j)
             - 2/m² Σ_{i,j} k(x_i, y_j)

KID is the mean over ``num_subsets`` subsets (default 100 subsets of m = 1000,
as in the paper's code and torch-fidelity); ``std`` is their standard deviation
(ddof = 0, as torch-fidelity).  Subsets are drawn exactly as torch-fidelity
does (``np.random.RandomState(seed)``, ``choice(N, m, replace=False)`` for X then Y
per subset, seed 2020), so numbers match ``torch_fidelity`` on the same features.
A subset size larger than the smaller set is clamped to it (with a warning, and
``details["subset_size_clamped"]``); torch-fidelity refuses instead.  KID can be
slightly negative when the distributions are close: the estimator is unbiased.
"""

from __future__ import annotations

import numpy as np

from bench.contract import feature_metric_name
from bench.errors import UserError
from bench.metrics.base import Features, Metric, MetricInfo, MetricResult, ScoreGroup, check_comparable, unpack, warn

METRIC = MetricInfo(
    name="kid",
    display_name="KID",
    higher_is_better=False,
    paper="Bińkowski et al. 2018, Demystifying MMD GANs (ICLR)",
    formula="mean over subsets of unbiased MMD^2 with k(x,y) = (x·y/d + 1)^3",
    inputs="Inception-v3 pool3 features (any extractor's features give KID_<extractor>)",
    url="https://arxiv.org/abs/1801.01401",
)

DEFAULT_SEED = 2020  # torch-fidelity's default rng_seed


def polynomial_kernel(
    x: np.ndarray, y: np.ndarray, degree: int = 3, gamma: float | None = None, coef0: float = 1.0
) -> np.ndarray:
    """k(x, y) = (gamma x·y + coef0)^degree, gamma = 1/d by default."""
    if gamma is None:
        gamma = 1.0 / x.shape[1]
    return (x @ y.T * gamma + coef0) ** degree


def mmd2_unbiased(k_xx: np.ndarray, k_xy: np.ndarray, k_yy: np.ndarray) -> float:
    """Unbiased MMD² from the three kernel matrices of equal-size samples (diagonals of k_xx, k_yy left out)."""
    m = k_xx.shape[0]
    sum_xx = k_xx.sum() - np.trace(k_xx)
    sum_yy = k_yy.sum() - np.trace(k_yy)
    return float((sum_xx + sum_yy) / (m * (m - 1)) - 2 * k_xy.sum() / (m * m))


def polynomial_mmd2(
    x: np.ndarray, y: np.ndarray, degree: int = 3, gamma: float | None = None, coef0: float = 1.0
) -> float:
    """Unbiased MMD² of one pair of subsets with the polynomial kernel."""
    return mmd2_unbiased(
        polynomial_kernel(x, x, degree, gamma, coef0),
        polynomial_kernel(x, y, degree, gamma, coef0),
        polynomial_kernel(y, y, degree, gamma, coef0),
    )


def kid_subsets(
    x: np.ndarray,
    y: np.ndarray,
    num_subsets: int = 100,
    subset_size: int = 1000,
    seed: int = DEFAULT_SEED,
    degree: int = 3,
    gamma: float | None = None,
    coef0: float = 1.0,
) -> np.ndarray:
    """MMD² of each subset pair (``num_subsets`` values out); subset_size must be <= both N.

    Only each subset's rows are read and cast to float64, so ``x`` and ``y`` may be float32 or memory-mapped:
    memory is O(subset_size²) whatever N is."""
    rng = np.random.RandomState(seed)
    out = np.zeros(num_subsets)
    for i in range(num_subsets):
        xs = np.asarray(x[np.sort(rng.choice(len(x), subset_size, replace=False))], np.float64)
        ys = np.asarray(y[np.sort(rng.choice(len(y), subset_size, replace=False))], np.float64)
        out[i] = polynomial_mmd2(xs, ys, degree, gamma, coef0)
    return out


def kid(
    generated: Features,
    reference: Features,
    num_subsets: int = 100,
    subset_size: int = 1000,
    seed: int = DEFAULT_SEED,
    extractor: str | None = None,
) -> MetricResult:
    """KID (mean of subset MMD²) with ``details["std"]``; the subset size is clamped to the smaller set."""
    x, kx = unpack(generated, "KID", float64=False)  # subsets are cast to float64 as they are drawn
    y, ky = unpack(reference, "KID", float64=False)
    key = check_comparable(kx, ky, x.shape[1], y.shape[1], "KID") or extractor
    if num_subsets < 1 or subset_size < 2:
        raise UserError(f"KID needs num_subsets >= 1 and subset_size >= 2, got {num_subsets} and {subset_size}")
    size = min(subset_size, len(x), len(y))
    if size < subset_size:
        warn(
            f"KID: subset size {subset_size} > number of samples (generated {len(x)}, reference {len(y)}); "
            f"using subsets of {size}"
        )
    values = kid_subsets(x, y, num_subsets, size, seed)
    return MetricResult(
        metric=feature_metric_name("KID", key),
        value=float(values.mean()),
        n=len(x),
        n_ref=len(y),
        extractor=key,
        details={
            "std": float(values.std()),
            "num_subsets": num_subsets,
            "subset_size": size,
            "subset_size_clamped": size < subset_size,
            "seed": seed,
        },
    )


def _score(group: ScoreGroup) -> list[MetricResult]:
    return [kid(group.gen, group.reference, subset_size=group.options.get("kid_subset_size", 1000))]


#: Above this many generated or reference images the O(N^2) kernel matrices of the KID bootstrap are not built.
KID_BOOTSTRAP_MAX_N = 5000


def kid_resamples(x: np.ndarray, y: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """Full-set unbiased MMD² (cubic kernel) of each resample (rows of ``counts``) of ``x``, ``y`` fixed.

    The kernel matrices are computed once; a resample with counts c has

        xx = (c^T K_xx c - Σ c_i² k_ii) / (N² - Σ c_i²)      (pairs of distinct images: ties left out)
        MMD²* = xx + mean_{i≠j} k(y_i, y_j) - 2 c^T K_xy 1 / (N M)

    Leaving out the pairs of copies of one image keeps the estimator unbiased for the resample's
    distribution; counting them (k(x, x) is the largest kernel value) would bias every resample upward."""
    k_xx = polynomial_kernel(x, x)
    k_xy_rows = polynomial_kernel(x, y).sum(axis=1)
    k_yy = polynomial_kernel(y, y)
    m = len(y)
    yy = (k_yy.sum() - np.trace(k_yy)) / (m * (m - 1))
    c = np.asarray(counts, np.float64)
    n = c.sum(axis=1)  # N for a plain resample; any total for a resample of whole prompts (bench.compare)
    c2 = (c * c).sum(axis=1)
    xx = (((c @ k_xx) * c).sum(axis=1) - (c * c) @ np.diag(k_xx)) / (n * n - c2)
    return xx + yy - 2 * (c @ k_xy_rows) / (n * m)


def _interval(group: ScoreGroup, results, boot, rng) -> list:
    """KID's interval: a bootstrap over generated images of the full-set unbiased MMD² (``kid_resamples``).

    Not mean ± 1.96·std of the subsets: the subset std describes how one m-subset's MMD² varies, not how the
    KID of this generated set would vary with another sample of images, and it is 0 whenever the subsets are
    the whole sets (N <= subset size, every small run).  The subset std stays in ``details["std"]``."""
    from bench.metrics.bootstrap import generated_counts, generated_method, make_interval

    x, _ = unpack(group.gen, "KID")
    y, _ = unpack(group.reference, "KID")
    if max(len(x), len(y)) > KID_BOOTSTRAP_MAX_N:
        return [None]
    stats = kid_resamples(x, y, generated_counts(rng, len(x), boot.resamples))
    r = results[0]
    method = generated_method(boot.resamples, boot.seed, "full-set unbiased MMD², pairs of copies left out")
    return [make_interval(stats, r.value, r.n, method)]


SCORER = Metric("kid", (METRIC,), stage="features", needs=("gen", "reference"), compute=_score, interval=_interval)
