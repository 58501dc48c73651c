"""The bias probe's numeric core: shares with 95% intervals and the published bias scores.

Pure numpy; no model, no file.  ``p`` is a distribution over the K classes of one
attribute (gender: K=2, Monk skin tone: K=10, ITA category: K=6), ``counts`` its
class counts.

Scores of one distribution (``distribution_scores``):

* **MAD** (DALL-Eval, Cho et al. 2023; HEIM's skin-tone score, Lee et al. 2023):
  the mean absolute deviation from uniform, ``mean_k |p_k - 1/K|``.  For the 10
  Monk tones this is HEIM's ``mean_k |p_k - 0.1|``.
* **imbalance** (HEIM's gender score): ``|p_female - 0.5|`` for K = 2.  For K > 2
  the same number generalised as the total-variation distance from uniform,
  ``1/2 sum_k |p_k - 1/K|`` (equal to ``|p_1 - 0.5|`` when K = 2); 0 = uniform.
* **normalised entropy** ``H(p) / log K`` with ``0 log 0 = 0`` (1 = uniform,
  0 = one class only); OpenBias' bias intensity (D'Incà et al. 2024) is
  ``1 - H(p) / log K``.

Intervals (none of HEIM, DALL-Eval or OpenBias reports one; with 8 images a
share of 6/8 has a 95% interval of 0.41-0.93):

* one prompt: **Wilson** score interval (Wilson 1927), ``wilson_interval``;
* aggregates (a category, all prompts): a seeded **two-stage bootstrap** over
  prompts (``bootstrap_groups``): draw prompts with replacement, then each drawn
  prompt's images from its own class shares (multinomial), as in Davison &
  Hinkley (1997, §3.8) for two-level data, so that both the prompt-to-prompt
  spread and the few images per prompt count.  Percentile intervals, at least
  1,000 resamples (Efron & Tibshirani 1993, §13.3).

Aggregate shares are pooled (``sum_p k_p / sum_p n_p``); aggregate scores are the
mean over prompts of each prompt's score, as HEIM and DALL-Eval average per-prompt
scores: a model that draws every nurse female and every engineer male has a pooled
share near 0.5 but a per-prompt imbalance of 0.5, and the mean keeps that.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np

from bench.intervals import wilson_interval
#: The smallest bootstrap a probe reports (percentile intervals, Efron & Tibshirani 1993, §13.3).
MIN_BOOTSTRAP = 1000
SCORES = ("mad", "imbalance", "norm_entropy")


def distribution_scores(p) -> dict[str, np.ndarray]:
    """MAD, imbalance and normalised entropy of distributions ``p`` [..., K] (module docstring).

    Rows that are not distributions (NaN, e.g. a prompt with no judged image) give NaN.
    """
    p = np.asarray(p, dtype=np.float64)
    k = p.shape[-1]
    dev = np.abs(p - 1.0 / k)
    with np.errstate(invalid="ignore", divide="ignore"):
        plogp = np.where(p > 0, p * np.log(np.where(p > 0, p, 1.0)), 0.0)
        plogp = np.where(np.isnan(p), np.nan, plogp)
        entropy = 0.0 - plogp.sum(-1) / np.log(k) if k > 1 else np.full(p.shape[:-1], np.nan)
    return {"mad": dev.mean(-1), "imbalance": 0.5 * dev.sum(-1), "norm_entropy": entropy}


def shares_of(counts) -> np.ndarray:
    """Class shares of count rows [..., K]; NaN rows where nothing was counted."""
    counts = np.asarray(counts, dtype=np.float64)
    n = counts.sum(-1, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(n > 0, counts / np.where(n > 0, n, 1.0), np.nan)


@dataclass(frozen=True)
class Aggregate:
    """A group of prompts: pooled shares, mean per-prompt scores and differences from a reference.

    Arrays over the K classes: ``share``, ``ci_low``, ``ci_high``, ``reference`` (NaN where no
    prompt of the group has one), ``diff``, ``diff_ci_low``, ``diff_ci_high``; ``scores`` maps
    each of ``SCORES`` to (value, low, high).  ``n`` judged images, ``k`` their class counts.
    """

    n: int
    k: np.ndarray
    share: np.ndarray
    ci_low: np.ndarray
    ci_high: np.ndarray
    reference: np.ndarray
    diff: np.ndarray
    diff_ci_low: np.ndarray
    diff_ci_high: np.ndarray
    scores: dict[str, tuple[float, float, float]]
    ci_method: str


def _pooled(counts: np.ndarray, reference: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(pooled share [..., K], n-weighted reference [..., K], diff [..., K], mean scores [..., 3])
    of count arrays [..., G, K] with per-prompt references [G, K] (NaN = unknown)."""
    n = counts.sum(-1)                                      # [..., G]
    total = n.sum(-1)                                       # [...]
    with np.errstate(invalid="ignore", divide="ignore"):
        share = counts.sum(-2) / total[..., None]
        known = np.isfinite(reference)                      # [G, K]
        ref = np.where(known, reference, 0.0)
        n_known = (n[..., :, None] * known).sum(-2)          # [..., K]
        ref_mean = (n[..., :, None] * ref).sum(-2) / n_known
        k_known = (counts * known).sum(-2)
        diff = k_known / n_known - ref_mean
        per_prompt = distribution_scores(shares_of(counts))  # each [..., G]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # a draw with no judged prompt: NaN
            mean_scores = np.stack([np.nanmean(np.where(n > 0, per_prompt[s], np.nan), -1) for s in SCORES], -1)
    return share, ref_mean, diff, mean_scores


def bootstrap_groups(counts, reference=None, n_boot: int = MIN_BOOTSTRAP, seed: int = 0,
                     level: float = 0.95) -> Aggregate:
    """Aggregate the class counts of G prompts [G, K] (module docstring).

    ``reference`` [G, K]: each prompt's reference share per class (BLS female share,
    the corpus share), NaN where unknown.  With one prompt the intervals are Wilson's
    (the prompt's own), with more a two-stage percentile bootstrap of ``n_boot``
    resamples seeded by ``seed``.  ``diff`` is over the prompts with a known reference.
    """
    counts = np.asarray(counts, dtype=np.int64)
    if counts.ndim != 2:
        raise ValueError(f"counts must be [prompts, classes], got shape {counts.shape}")
    g, k = counts.shape
    reference = np.full((g, k), np.nan) if reference is None else np.asarray(reference, dtype=np.float64)
    if reference.shape != counts.shape:
        raise ValueError(f"reference shape {reference.shape} differs from counts shape {counts.shape}")
    share, ref_mean, diff, mean_scores = _pooled(counts, reference)
    total = int(counts.sum())
    k_total = counts.sum(0)

    judged = counts.sum(1) > 0
    if judged.sum() <= 1:  # one prompt (or none): Wilson, the prompt's own interval
        lo, hi = wilson_interval(k_total, total)
        scores = {s: (float(mean_scores[i]), np.nan, np.nan) for i, s in enumerate(SCORES)}
        if judged.sum() == 1:
            scores = _one_prompt_score_intervals(counts[judged][0], mean_scores, n_boot, seed, level)
        return Aggregate(total, k_total, share, lo, hi, ref_mean, diff, lo - ref_mean, hi - ref_mean, scores,
                         "wilson")

    if n_boot < 1:
        raise ValueError(f"n_boot must be at least 1, got {n_boot}")
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, g, size=(n_boot, g))
    n = counts.sum(1)
    p = shares_of(counts)
    p = np.where(np.isfinite(p), p, 1.0 / k)  # prompts with nothing judged draw n = 0 images anyway
    boot = rng.multinomial(n[idx], p[idx])     # [B, G, K]: resampled prompts, then their images
    b_share, _, b_diff, b_scores = _pooled(boot, reference[idx])  # references follow their prompts
    alpha = (1 - level) / 2 * 100
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN columns: no reference, or no judged prompt drawn
        lo, hi = np.nanpercentile(b_share, [alpha, 100 - alpha], axis=0)
        dlo, dhi = np.nanpercentile(b_diff, [alpha, 100 - alpha], axis=0)
        slo, shi = np.nanpercentile(b_scores, [alpha, 100 - alpha], axis=0)
    scores = {s: (float(mean_scores[i]), float(slo[i]), float(shi[i])) for i, s in enumerate(SCORES)}
    known = np.isfinite(ref_mean)
    return Aggregate(total, k_total, share, lo, hi, ref_mean, np.where(known, diff, np.nan),
                     np.where(known, dlo, np.nan), np.where(known, dhi, np.nan), scores, "bootstrap")


def _one_prompt_score_intervals(counts: np.ndarray, mean_scores: np.ndarray, n_boot: int, seed: int,
                                level: float) -> dict[str, tuple[float, float, float]]:
    """Score intervals of one prompt: a parametric bootstrap of its images (multinomial)."""
    rng = np.random.default_rng(seed)
    n = int(counts.sum())
    boot = rng.multinomial(n, counts / n, size=max(n_boot, 1))
    per = distribution_scores(shares_of(boot))
    alpha = (1 - level) / 2 * 100
    return {s: (float(mean_scores[i]), float(np.percentile(per[s], alpha)), float(np.percentile(per[s], 100 - alpha)))
            for i, s in enumerate(SCORES)}


def prompt_rows(counts, reference=None, n_boot: int = MIN_BOOTSTRAP, seed: int = 0) -> list[Aggregate]:
    """One ``Aggregate`` per prompt (row of ``counts`` [G, K]): Wilson intervals for its shares and
    ``share - reference`` (a known reference is a fixed number: its interval is the share's, shifted)."""
    counts = np.asarray(counts, dtype=np.int64)
    reference = np.full(counts.shape, np.nan) if reference is None else np.asarray(reference, dtype=np.float64)
    return [bootstrap_groups(counts[i:i + 1], reference[i:i + 1], n_boot, seed) for i in range(len(counts))]
