"""Improved precision and recall of generative models.

Kynkäänniemi, Karras, Laine, Lehtinen, Aila 2019, "Improved Precision and Recall
Metric for Assessing Generative Models", NeurIPS.

Each set's manifold is the union of balls around its points, the radius of a
point being the distance to its k-th nearest neighbour in the same set (itself
excluded; k = 3 by default):

    in(q, S) = 1  if  ||q - s|| <= r_k(s)  for some s in S
    precision = mean over generated g of in(g, reference)
    recall    = mean over reference r of in(r, generated)

Distances are Euclidean, computed in float64 as ||a||² + ||b||² - 2 a·b (clipped
at 0) in tiles of ``ROW_BLOCK`` x ``ROW_BLOCK`` rows (a running k+1 smallest per row for
the radii, a running "any" for the manifold test), so memory stays O(ROW_BLOCK²)
whatever N is and the features may stay memory-mapped; compared squared, as the authors' code (NVlabs
``precision-recall`` with ``<=``).  Needs more than k points in each set.
"""

from __future__ import annotations

import numpy as np

from bench.contract import feature_metric_name
from bench.errors import UserError
from bench.metrics.base import (ROW_BLOCK, Features, Metric, MetricInfo, MetricResult, check_comparable, row_blocks,
                                squared_norms, unpack)

METRIC_PRECISION = MetricInfo(
    name="precision",
    display_name="Precision",
    higher_is_better=True,
    paper="Kynkäänniemi et al. 2019, Improved Precision and Recall Metric for Assessing Generative Models (NeurIPS)",
    formula="share of generated samples inside the reference k-NN manifold (k = 3)",
    inputs="features of generated and reference images",
    url="https://arxiv.org/abs/1904.06991",
    lower_bound=0.0,
    upper_bound=1.0,
)
METRIC_RECALL = MetricInfo(
    name="recall",
    display_name="Recall",
    higher_is_better=True,
    paper=METRIC_PRECISION.paper,
    formula="share of reference samples inside the generated k-NN manifold (k = 3)",
    inputs=METRIC_PRECISION.inputs,
    url=METRIC_PRECISION.url,
    lower_bound=0.0,
    upper_bound=1.0,
)
METRICS = (METRIC_PRECISION, METRIC_RECALL)

_BLOCK = ROW_BLOCK


def _sq_distances(a: np.ndarray, b: np.ndarray, a_sq: np.ndarray, b_sq: np.ndarray) -> np.ndarray:
    return np.maximum(a_sq[:, None] + b_sq[None, :] - 2 * a @ b.T, 0.0)


def knn_radii_sq(x: np.ndarray, k: int = 3) -> np.ndarray:
    """Squared distance of each row of ``x`` to its k-th nearest other row (tile by tile, any float dtype)."""
    if len(x) <= k:
        raise UserError(f"precision/recall with k={k} needs more than {k} images per set, got {len(x)}")
    x_sq = squared_norms(x, _BLOCK)
    out = np.empty(len(x))
    for start, rows in row_blocks(x, _BLOCK):
        best = None  # the k+1 smallest squared distances of each row so far (the point itself, 0, among them)
        for col, cols in row_blocks(x, _BLOCK):
            d2 = _sq_distances(rows, cols, x_sq[start : start + len(rows)], x_sq[col : col + len(cols)])
            merged = d2 if best is None else np.concatenate([best, d2], axis=1)
            keep = min(k + 1, merged.shape[1])
            best = np.partition(merged, keep - 1, axis=1)[:, :keep].copy()  # not a view: frees the tile
        # The row's k+1 smallest include the point itself (distance 0): their largest is the k-th neighbour's.
        out[start : start + len(rows)] = best.max(axis=1)
    return out


def in_manifold(query: np.ndarray, support: np.ndarray, radii_sq: np.ndarray) -> np.ndarray:
    """Bool per query row: within the radius of at least one support row (tile by tile, any float dtype)."""
    q_sq = squared_norms(query, _BLOCK)
    s_sq = squared_norms(support, _BLOCK)
    out = np.zeros(len(query), dtype=bool)
    for start, rows in row_blocks(query, _BLOCK):
        hit = np.zeros(len(rows), dtype=bool)
        for col, cols in row_blocks(support, _BLOCK):
            todo = ~hit  # rows already inside some ball need no more tiles
            if not todo.any():
                break
            d2 = _sq_distances(rows[todo], cols, q_sq[start : start + len(rows)][todo], s_sq[col : col + len(cols)])
            hit[todo] = (d2 <= radii_sq[None, col : col + len(cols)]).any(axis=1)
        out[start : start + len(rows)] = hit
    return out


def precision_recall(
    generated: Features, reference: Features, k: int = 3, extractor: str | None = None
) -> tuple[MetricResult, MetricResult]:
    """(precision, recall) of generated vs reference features, named by the extractor
    ("precision_<extractor>", ``bench.contract.feature_metric_name``) so that two
    extractors in one run never share a name."""
    if k < 1:
        raise UserError(f"precision/recall needs k >= 1, got {k}")
    g, kg = unpack(generated, "precision/recall", float64=False)  # tiles are cast to float64 as they are read
    r, kr = unpack(reference, "precision/recall", float64=False)
    key = check_comparable(kg, kr, g.shape[1], r.shape[1], "precision/recall") or extractor
    precision = float(in_manifold(g, r, knn_radii_sq(r, k)).mean())
    recall = float(in_manifold(r, g, knn_radii_sq(g, k)).mean())
    details = {"k": k}
    return (
        MetricResult(feature_metric_name("precision", key), precision, n=len(g), n_ref=len(r), extractor=key,
                     details=details),
        MetricResult(feature_metric_name("recall", key), recall, n=len(g), n_ref=len(r), extractor=key,
                     details=details),
    )


PR_BOOTSTRAP_MAX_N = 2000


def pr_resamples(g: np.ndarray, r: np.ndarray, counts: np.ndarray, k: int = 3) -> tuple[np.ndarray, np.ndarray]:
    """(precision, recall) of each resample (rows of ``counts``) of the generated rows ``g``, reference fixed.

    Precision is the mean over generated rows of a per-row indicator (the reference manifold is fixed):
    c @ in(g, ref) / N, exactly.  Recall needs the resampled generated manifold: each drawn image's radius is
    its k-th nearest neighbour among the drawn copies of the *other* images (copies of itself, at distance 0,
    are left out, as KID leaves out pairs of copies); distances are computed once."""
    c_all = np.asarray(counts, np.float64)
    precision_ind = in_manifold(g, r, knn_radii_sq(r, k)).astype(np.float64)
    precision = c_all @ precision_ind / c_all.sum(axis=1)
    g_sq = (g * g).sum(axis=1)
    d_gg = _sq_distances(g, g, g_sq, g_sq)
    np.fill_diagonal(d_gg, np.inf)
    d_rg = _sq_distances(r, g, (r * r).sum(axis=1), g_sq)
    recall = np.empty(len(c_all))
    for b, c in enumerate(c_all):
        drawn = np.flatnonzero(c > 0)
        sub = d_gg[np.ix_(drawn, drawn)]
        order = np.argsort(sub, axis=1)
        mult = np.cumsum(c[drawn][order], axis=1)  # copies of the neighbours, nearest first (self is inf: last)
        reached = mult >= k
        # fewer than k copies of other images drawn: the farthest other drawn image bounds the ball
        pos = np.where(reached.any(axis=1), np.argmax(reached, axis=1), max(len(drawn) - 2, 0))
        radii = np.take_along_axis(sub, order, axis=1)[np.arange(len(drawn)), pos]
        recall[b] = (d_rg[:, drawn] <= radii[None, :]).any(axis=1).mean()
    return precision, recall


def _interval(group, results, boot, rng) -> list:
    from bench.metrics.bootstrap import generated_counts, generated_method, make_interval

    g, _ = unpack(group.gen, "precision/recall")
    r, _ = unpack(group.reference, "precision/recall")
    k = group.options.get("pr_k", 3)
    if max(len(g), len(r)) > PR_BOOTSTRAP_MAX_N or len(g) <= k:
        return [None, None]
    precision, recall = pr_resamples(g, r, generated_counts(rng, len(g), boot.resamples), k)
    method = generated_method(boot.resamples, boot.seed)
    recall_method = generated_method(boot.resamples, boot.seed, "k-NN radii among copies of the other drawn images")
    return [make_interval(precision, results[0].value, results[0].n, method),
            make_interval(recall, results[1].value, results[1].n, recall_method)]


SCORER = Metric("precision_recall", METRICS, stage="features", needs=("gen", "reference"),
                compute=lambda g: precision_recall(g.gen, g.reference, k=g.options.get("pr_k", 3)),
                interval=_interval)
