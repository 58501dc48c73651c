"""Inception Score (IS).

Salimans, Goodfellow, Zaremba, Cheung, Radford, Chen 2016, "Improved Techniques
for Training GANs", NeurIPS.

With p(y|x) = softmax(logits(x)) over the 1008 Inception classes, split the N
samples into ``splits`` consecutive parts (part i = rows [i·N//s, (i+1)·N//s)),
and in each part with marginal p(y) = mean_x p(y|x):

    IS_part = exp( mean_x KL(p(y|x) || p(y)) )

Report the mean and the standard deviation (ddof = 0) over parts, as the paper's
code and torch-fidelity (torchmetrics reports ddof = 1 and shuffles randomly).
Logits are Inception-v3's *unbiased* logits pool3 @ W^T, without the fc bias, as
in the original TensorFlow code (``InceptionExtractor.logits``).  Splits follow
the input order (no shuffling), so pass samples in a fixed order.  Computed in
float64.  Inception only: the score is defined on ImageNet classes.
"""

from __future__ import annotations

import numpy as np
from scipy.special import log_softmax

from bench.errors import UserError
from bench.metrics.base import Metric, MetricInfo, MetricResult, unpack

METRIC = MetricInfo(
    name="is",
    display_name="Inception Score",
    higher_is_better=True,
    paper="Salimans et al. 2016, Improved Techniques for Training GANs (NeurIPS)",
    formula="exp(E_x KL(p(y|x) || p(y))), mean and std over 10 splits",
    inputs="Inception-v3 logits (unbiased) of generated images",
    url="https://arxiv.org/abs/1606.03498",
    lower_bound=1.0,
)


def inception_score_splits(logits: np.ndarray, splits: int = 10) -> np.ndarray:
    """IS of each split (float64); ``logits`` is [N, classes]."""
    x = np.asarray(logits, dtype=np.float64)
    n = x.shape[0]
    log_p = log_softmax(x, axis=1)
    p = np.exp(log_p)
    scores = np.empty(splits)
    for i in range(splits):
        lo, hi = i * n // splits, (i + 1) * n // splits
        part = p[lo:hi]
        # p log(p/q) -> 0 as p -> 0: an underflowed p = 0 (so q may be 0) contributes 0, not NaN.
        with np.errstate(divide="ignore", invalid="ignore"):
            log_q = np.log(part.mean(axis=0, keepdims=True))
            terms = np.where(part > 0, part * (log_p[lo:hi] - log_q), 0.0)
        kl = terms.sum(axis=1)
        scores[i] = np.exp(kl.mean())
    return scores


def inception_score(logits: np.ndarray, splits: int = 10) -> MetricResult:
    """IS mean (``value``) and std (``details["std"]``) of Inception logits."""
    x, _ = unpack(logits, "Inception Score")
    if splits < 1 or x.shape[0] < splits:
        # An empty split has no marginal (NaN); ask for at least one image per split.
        raise UserError(
            f"Inception Score with {splits} splits needs at least {splits} images, got {x.shape[0]}: "
            f"generate more images or use fewer splits"
        )
    scores = inception_score_splits(x, splits)
    return MetricResult(
        metric="IS", value=float(scores.mean()), n=x.shape[0], details={"std": float(scores.std()), "splits": splits}
    )


#: Runs where the extractor gives Inception logits (``bench.score`` sets ``logits`` for Inception only).
SCORER = Metric("is", (METRIC,), stage="features", needs=("logits",),
                compute=lambda g: [inception_score(g.logits)])
