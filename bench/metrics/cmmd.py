"""CMMD: MMD between CLIP embeddings with a Gaussian RBF kernel.

Jayasumana, Ramalingam, Veit, Glasner, Chakrabarti, Kumar 2024, "Rethinking FID:
Towards a Better Evaluation Metric for Image Generation", CVPR.

Exactly the reference code (google-research/google-research, ``cmmd/distance.py``):
with sigma = 10, gamma = 1 / (2 sigma²), k(x, y) = exp(-gamma ||x - y||²),

    CMMD = 1000 · ( mean_ij k(x_i, x_j) + mean_ij k(y_i, y_j) - 2 mean_ij k(x_i, y_j) )

i.e. the *biased* (V-statistic) MMD² estimator, diagonals included, scaled by 1000.
Inputs are L2-normalised CLIP image embeddings (the reference embeds with CLIP
ViT-L/14@336 and normalises; our ``OpenClipExtractor`` normalises too).  No
Gaussian assumption, unlike FID.  Computed in float64, in tiles of ``ROW_BLOCK`` x
``ROW_BLOCK`` rows cast as they are read, so memory stays O(ROW_BLOCK²) whatever N
is and the embeddings may stay memory-mapped.
"""

from __future__ import annotations

import numpy as np

from bench.metrics.base import (ROW_BLOCK, Features, Metric, MetricInfo, MetricResult, check_comparable, row_blocks,
                                squared_norms, unpack, warn)

METRIC = MetricInfo(
    name="cmmd",
    display_name="CMMD",
    higher_is_better=False,
    paper="Jayasumana et al. 2024, Rethinking FID: Towards a Better Evaluation Metric for Image Generation (CVPR)",
    formula="1000 · (mean k(x,x') + mean k(y,y') - 2 mean k(x,y)), k = exp(-||x-y||² / (2·10²))",
    inputs="L2-normalised CLIP image embeddings of generated and reference images",
    url="https://arxiv.org/abs/2401.09603",
)

SIGMA = 10.0
SCALE = 1000.0
_BLOCK = ROW_BLOCK


def _mean_rbf(x: np.ndarray, y: np.ndarray, gamma: float) -> float:
    """mean_ij exp(-gamma ||x_i - y_j||²) with ||x-y||² = ||x||² + ||y||² - 2 x·y, as the reference
    (float64 tiles of ``_BLOCK`` x ``_BLOCK`` rows; ``x``, ``y`` of any float dtype, memory-mapped or not)."""
    x_sq = squared_norms(x, _BLOCK)
    y_sq = squared_norms(y, _BLOCK)
    total = 0.0
    for start, xb in row_blocks(x, _BLOCK):
        for col, yb in row_blocks(y, _BLOCK):
            d2 = -2 * xb @ yb.T + x_sq[start : start + len(xb), None] + y_sq[None, col : col + len(yb)]
            total += np.exp(-gamma * d2).sum()
    return total / (len(x) * len(y))


def mmd_rbf(x: np.ndarray, y: np.ndarray, sigma: float = SIGMA, scale: float = SCALE) -> float:
    """scale · biased MMD² with k = exp(-||x-y||² / (2 sigma²)) (``cmmd/distance.py: mmd``)."""
    x, y = np.asarray(x), np.asarray(y)  # no copy of arrays (memory-mapped ones included); tiles are cast
    gamma = 1.0 / (2 * sigma**2)
    return float(scale * (_mean_rbf(x, x, gamma) + _mean_rbf(y, y, gamma) - 2 * _mean_rbf(x, y, gamma)))


def cmmd(generated: Features, reference: Features, extractor: str | None = None) -> MetricResult:
    """CMMD between generated and reference CLIP embeddings."""
    x, kx = unpack(generated, "CMMD", float64=False)  # tiles are cast to float64 as they are read
    y, ky = unpack(reference, "CMMD", float64=False)
    key = check_comparable(kx, ky, x.shape[1], y.shape[1], "CMMD") or extractor
    for what, arr in (("generated", x), ("reference", y)):
        if not np.allclose(np.sqrt(squared_norms(arr)), 1.0, atol=1e-3):
            warn(f"CMMD: {what} embeddings are not L2-normalised; the reference CMMD normalises CLIP embeddings")
    return MetricResult(
        metric="CMMD",
        value=mmd_rbf(x, y),
        n=len(x),
        n_ref=len(y),
        extractor=key,
        details={"sigma": SIGMA, "scale": SCALE},
    )


CMMD_BOOTSTRAP_MAX_N = 5000


def _rbf(x: np.ndarray, y: np.ndarray, gamma: float) -> np.ndarray:
    d2 = -2 * x @ y.T + (x * x).sum(axis=1)[:, None] + (y * y).sum(axis=1)[None, :]
    return np.exp(-gamma * d2)


def cmmd_resamples(x: np.ndarray, y: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """CMMD of each resample (rows of ``counts``; totals may differ) of ``x`` against a fixed ``y``: the V-statistic on
    the resampled rows, exactly (``1000 (c^T K_xx c / N² + mean K_yy - 2 c^T K_xy 1 / (N M))``), kernels built once."""
    x = np.asarray(x, np.float64)
    y = np.asarray(y, np.float64)
    gamma = 1.0 / (2 * SIGMA**2)
    m = len(y)
    c = np.asarray(counts, np.float64)
    n = c.sum(axis=1)  # N for a plain resample; any total for a resample of whole prompts (bench.compare)
    xx = ((c @ _rbf(x, x, gamma)) * c).sum(axis=1) / (n * n)
    xy = c @ _rbf(x, y, gamma).sum(axis=1) / (n * m)
    return SCALE * (xx + _mean_rbf(y, y, gamma) - 2 * xy)


def _interval(group, results, boot, rng) -> list:
    from bench.metrics.bootstrap import generated_counts, generated_method, make_interval

    x, _ = unpack(group.gen, "CMMD")
    y, _ = unpack(group.reference, "CMMD")
    if max(len(x), len(y)) > CMMD_BOOTSTRAP_MAX_N:
        return [None]
    stats = cmmd_resamples(x, y, generated_counts(rng, len(x), boot.resamples))
    r = results[0]
    return [make_interval(stats, r.value, r.n, generated_method(boot.resamples, boot.seed))]


SCORER = Metric("cmmd", (METRIC,), stage="clip", needs=("gen", "reference"), compute=lambda g: [cmmd(g.gen, g.reference)],
                interval=_interval)
