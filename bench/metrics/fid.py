"""Fréchet Inception Distance (FID) and Fréchet Distance on any features (FD_<extractor>).

Heusel, Ramsauer, Unterthiner, Nessler, Hochreiter 2017, "GANs Trained by a Two
Time-Scale Update Rule Converge to a Local Nash Equilibrium", NeurIPS.

Fit a Gaussian N(mu, S) to each feature set (mean and unbiased covariance,
ddof=1 as ``np.cov``) and take the Fréchet (2-Wasserstein) distance:

    FD = ||mu_1 - mu_2||^2 + Tr(S_1 + S_2 - 2 (S_1 S_2)^(1/2))

``frechet_distance`` computes the same number as pytorch-fid's
``calculate_frechet_distance`` (tested to 1e-12 relative on equal statistics),
but takes Tr((S_1 S_2)^(1/2)) from two symmetric eigendecompositions instead
of ``scipy.linalg.sqrtm`` of the non-symmetric product (see
``trace_sqrt_product``: ~3x faster at d = 1280, no complex arithmetic, no eps
fallback).  Everything is float64: float32 loses several digits on 2048x2048
covariances.

Naming: "FID" only for Inception-v3 pool3 features; any other extractor gives
"FD_<extractor name>" (e.g. FD_dinov2-vitl14, Stein et al. 2023).  Results record
the extractor key (which contains the resize mode) and N.

Statistics stream: ``StreamingGaussian`` accumulates the sum and the sum of outer
products in float64 batch by batch, so memory is O(d^2) whatever N is, and batch
size or image order change the result only by float64 rounding (~1e-12).
With N <= d the covariance is singular (rank < d): the FD is still computed but a
``MetricWarning`` naming N and d is raised; use N >= d (FID protocols use 10k-50k).

Reference statistics are pytorch-fid / clean-fid ``.npz`` files (``mu``,
``sigma``).  Ours add ``extractor`` (the key) and ``n``; a reference made with
another extractor is refused.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Union

import numpy as np

from bench.atomic import atomic_path
from bench.contract import feature_metric_name
from bench.errors import UserError
from bench.features.base import FeatureSet, key_resize
from bench.metrics.base import (ROW_BLOCK, Features, Metric, MetricInfo, MetricResult, ScoreGroup, check_comparable,
                                row_blocks, unpack, warn)

METRIC = MetricInfo(
    name="fid",
    display_name="FID",
    higher_is_better=False,
    paper="Heusel et al. 2017, GANs Trained by a Two Time-Scale Update Rule Converge to a Local Nash Equilibrium "
    "(NeurIPS)",
    formula="||mu_g - mu_r||^2 + Tr(S_g + S_r - 2 (S_g S_r)^(1/2)), Gaussian fits of features",
    inputs="Inception-v3 pool3 features of generated and reference images (FD_<extractor> for other features)",
    url="https://arxiv.org/abs/1706.08500",
    lower_bound=0.0,
)


def fd_metric_name(extractor: str | None) -> str:
    """ "FID" for Inception pool3 features, "FD_<name>" for others, "FD" when unknown (``bench.contract``'s rule)."""
    return feature_metric_name("FD", extractor)


def _check_rank(n: int | None, d: int, what: str) -> None:
    if n is not None and n <= d:
        warn(
            f"{what}: N={n} samples <= d={d} feature dimensions: the covariance is singular and the "
            f"Fréchet distance is unreliable; use more than {d} images"
        )


@dataclass(frozen=True)
class GaussianStats:
    """Mean and covariance (float64) of a feature set; ``n`` is None for foreign files that do not record it."""

    mu: np.ndarray
    sigma: np.ndarray
    n: int | None
    extractor: str | None = None

    @property
    def dim(self) -> int:
        return int(self.mu.shape[0])

    @classmethod
    def from_features(cls, features: Features, batch_size: int | None = None,
                      what: str = "Fréchet distance") -> "GaussianStats":
        """``what`` names the set in the N <= d warning (e.g. "Fréchet distance, reference set")."""
        # Rows are cast to float64 batch by batch (``ROW_BLOCK`` rows by default): no float64 copy of all
        # N x d features, and memory-mapped features are read once, in order.
        arr, key = unpack(features, "Gaussian statistics", float64=False)
        acc = StreamingGaussian()
        for _, rows in row_blocks(arr, batch_size or ROW_BLOCK, float64=False):
            acc.update(rows)
        return acc.finalize(key, what)

    def save_npz(self, path: str | os.PathLike) -> Path:
        """Write pytorch-fid / clean-fid compatible ``mu``, ``sigma``, plus ``extractor`` and ``n`` (atomic)."""
        path = Path(path)
        extra = {}
        if self.extractor is not None:
            extra["extractor"] = np.array(self.extractor)
        if self.n is not None:
            extra["n"] = np.array(self.n, dtype=np.int64)
        with atomic_path(path) as tmp:
            with open(tmp, "wb") as f:
                np.savez(f, mu=self.mu, sigma=self.sigma, **extra)
        return path

    @classmethod
    def load_npz(cls, path: str | os.PathLike, expect_extractor: str | None = None) -> "GaussianStats":
        """Read a ``.npz`` with ``mu`` and ``sigma``; refuse one recorded with another extractor than expected."""
        try:
            with np.load(path, allow_pickle=False) as f:
                if "mu" not in f or "sigma" not in f:
                    raise UserError(
                        f"{path} is not a statistics file (needs arrays 'mu' and 'sigma'): "
                        f"write it with GaussianStats.save_npz or pytorch-fid --save-stats"
                    )
                mu, sigma = f["mu"].astype(np.float64), f["sigma"].astype(np.float64)
                extractor = str(f["extractor"]) if "extractor" in f else None
                n = int(f["n"]) if "n" in f else None
        except (OSError, ValueError) as e:
            raise UserError(f"cannot read reference statistics {path} ({type(e).__name__}): check the path") from e
        if mu.ndim != 1 or sigma.shape != (mu.shape[0], mu.shape[0]):
            raise UserError(
                f"{path}: mu {mu.shape} and sigma {sigma.shape} do not fit: rebuild the reference statistics"
            )
        if expect_extractor is not None and extractor is not None and extractor != expect_extractor:
            raise UserError(
                f"reference {path} was made with extractor {extractor}, not {expect_extractor}: "
                f"rebuild the reference with the same extractor and settings"
            )
        if extractor is None:
            warn(
                f"reference {path} does not record its extractor (pytorch-fid / clean-fid file?): "
                f"assuming it matches; pytorch-fid and clean-fid use Inception pool3 with their own resize"
            )
        _check_rank(n, mu.shape[0], f"reference {path}")
        return cls(mu=mu, sigma=sigma, n=n, extractor=extractor)


class StreamingGaussian:
    """Accumulate sum(x) and sum(x x^T) in float64 over batches; ``finalize`` -> GaussianStats.

    mu = sum(x) / N
    S  = (sum(x x^T) - N mu mu^T) / (N - 1)
    """

    def __init__(self) -> None:
        self.n = 0
        self.sum: np.ndarray | None = None
        self.outer: np.ndarray | None = None

    def update(self, batch: np.ndarray) -> None:
        x = np.asarray(batch, dtype=np.float64)
        if x.ndim != 2:
            raise UserError(f"feature batch must be 2-D [n, d], got shape {x.shape}")
        if self.sum is None:
            self.sum = np.zeros(x.shape[1])
            self.outer = np.zeros((x.shape[1], x.shape[1]))
        elif x.shape[1] != self.sum.shape[0]:
            raise UserError(
                f"feature batch has d={x.shape[1]}, earlier batches d={self.sum.shape[0]}: one extractor per statistics"
            )
        self.sum += x.sum(axis=0)
        self.outer += x.T @ x
        self.n += x.shape[0]

    def finalize(self, extractor: str | None = None, what: str = "Fréchet distance") -> GaussianStats:
        if self.n < 2 or self.sum is None:
            raise UserError(f"Gaussian statistics need at least 2 images, got {self.n}: generate or select more images")
        mu = self.sum / self.n
        sigma = (self.outer - self.n * np.outer(mu, mu)) / (self.n - 1)
        _check_rank(self.n, mu.shape[0], what)
        return GaussianStats(mu=mu, sigma=sigma, n=self.n, extractor=extractor)


def _sqrt_psd(sigma: np.ndarray) -> np.ndarray:
    """Symmetric square root of a covariance matrix (eigenvalues below 0 from rounding are clipped)."""
    w, u = np.linalg.eigh(sigma)
    return (u * np.sqrt(np.clip(w, 0.0, None))) @ u.T


def trace_sqrt_product(sigma1: np.ndarray, sigma2: np.ndarray) -> float:
    """Tr((S1 S2)^(1/2)) for covariance matrices S1, S2, in float64.

    S1 S2 is similar to the symmetric PSD matrix M = S1^(1/2) S2 S1^(1/2)
    (M = S1^(1/2) (S1 S2) S1^(-1/2)), so both have the same eigenvalues and
    Tr((S1 S2)^(1/2)) = sum_i sqrt(lambda_i(M)).  Two symmetric eigensolves
    (``eigh``: backward stable, real arithmetic) replace pytorch-fid's
    ``scipy.linalg.sqrtm`` of the non-symmetric product (a complex Schur
    form): about 3x faster at d = 1280 and equal to it within 1e-12 relative
    on well-conditioned covariances (tested); with singular covariances
    (N <= d) it needs no eps fallback, the tiny negative eigenvalues that
    rounding leaves are clipped to 0.
    """
    root = _sqrt_psd(sigma1)
    m = root @ sigma2 @ root
    eig = np.linalg.eigvalsh((m + m.T) / 2)  # symmetrise away rounding asymmetry
    return float(np.sqrt(np.clip(eig, 0.0, None)).sum())


def frechet_distance(mu1: np.ndarray, sigma1: np.ndarray, mu2: np.ndarray, sigma2: np.ndarray) -> float:
    """||mu1 - mu2||^2 + Tr(sigma1 + sigma2 - 2 (sigma1 sigma2)^(1/2)), in float64.

    The same quantity as pytorch-fid's ``calculate_frechet_distance``; the
    trace of the matrix square root comes from ``trace_sqrt_product``."""
    mu1, mu2 = np.atleast_1d(np.asarray(mu1, np.float64)), np.atleast_1d(np.asarray(mu2, np.float64))
    sigma1, sigma2 = np.atleast_2d(np.asarray(sigma1, np.float64)), np.atleast_2d(np.asarray(sigma2, np.float64))
    if mu1.shape != mu2.shape or sigma1.shape != sigma2.shape:
        raise UserError(
            f"Fréchet distance: dimensions differ ({mu1.shape[0]} vs {mu2.shape[0]}): "
            f"use the same extractor for both sets"
        )
    if not (np.isfinite(sigma1).all() and np.isfinite(sigma2).all()):
        raise UserError("Fréchet distance: a covariance matrix has NaN or inf entries: check the features")
    diff = mu1 - mu2
    return float(diff.dot(diff) + np.trace(sigma1) + np.trace(sigma2) - 2 * trace_sqrt_product(sigma1, sigma2))


StatsOrFeatures = Union[GaussianStats, FeatureSet, np.ndarray]


def _as_stats(x: StatsOrFeatures, what: str = "Fréchet distance") -> GaussianStats:
    return x if isinstance(x, GaussianStats) else GaussianStats.from_features(x, what=what)


def fd(generated: StatsOrFeatures, reference: StatsOrFeatures, extractor: str | None = None) -> MetricResult:
    """FID / FD_<extractor> between generated and reference features (or their statistics).

    ``extractor`` names the features when plain arrays are given.  Raises
    UserError for features of different extractors or fewer than 2 images; warns
    (MetricWarning) when N <= d.
    """
    g = _as_stats(generated, "Fréchet distance, generated set")
    r = _as_stats(reference, "Fréchet distance, reference set")
    key = check_comparable(g.extractor, r.extractor, g.dim, r.dim, "Fréchet distance") or extractor
    value = frechet_distance(g.mu, g.sigma, r.mu, r.sigma)
    return MetricResult(
        metric=fd_metric_name(key),
        value=value,
        n=g.n or 0,
        n_ref=r.n,
        extractor=key,
        details={"resize": key_resize(key) if key else None, "dim": g.dim},
    )


fid = fd




# ------------------------------------------------------------------ bootstrap

#: Resamples for FD when N > d: each costs a d x d eigendecomposition (~0.3 s at d = 1280 on 2 cores).
FD_RESAMPLES_LARGE_N = 200


def weighted_stats(x: np.ndarray, counts: np.ndarray, extractor: str | None = None) -> GaussianStats:
    """The Gaussian statistics of a resample given by row ``counts`` (sum = N), from weighted sums (exact):

    sum = c @ X,   sum of outer products = X^T (c * X),   then ``StreamingGaussian.finalize``'s formulas."""
    x = np.asarray(x, np.float64)
    c = np.asarray(counts, np.float64)
    n = c.sum()
    mu = c @ x / n
    sigma = (x.T @ (c[:, None] * x) - n * np.outer(mu, mu)) / (n - 1)
    return GaussianStats(mu=mu, sigma=sigma, n=int(round(n)), extractor=extractor)


def fd_resamples(x: np.ndarray, reference: GaussianStats, counts: np.ndarray) -> np.ndarray:
    """FD of each resample (rows of ``counts``) of the generated features ``x`` against a fixed reference.

    The reference's square root R = S_r^(1/2) is computed once.  Tr((S_g S_r)^(1/2)) = Σ sqrt(λ(R S_g R)), and with
    Z = diag(sqrt(c)) (X - mu) R, R S_g R = Z^T Z / (N-1), whose nonzero eigenvalues are those of the
    n_distinct x n_distinct Gram matrix Z Z^T / (N-1): when fewer distinct rows than d are drawn, the
    Gram matrix replaces the d x d one (exact, the same eigenvalues)."""
    x = np.asarray(x, np.float64)
    d = x.shape[1]
    root = _sqrt_psd(reference.sigma)
    xr = x @ root
    tr_r = float(np.trace(reference.sigma))
    out = np.empty(len(counts))
    for b, c in enumerate(np.asarray(counts, np.float64)):
        keep = c > 0
        ck, xk, xrk = c[keep], x[keep], xr[keep]
        n = ck.sum()
        mu = ck @ xk / n
        diff = mu - reference.mu
        centred = xk - mu
        tr_g = float(ck @ (centred * centred).sum(axis=1)) / (n - 1)
        z = np.sqrt(ck)[:, None] * (xrk - mu @ root)
        m = z @ z.T if len(ck) <= d else z.T @ z
        eig = np.linalg.eigvalsh((m + m.T) / 2) / (n - 1)
        out[b] = diff @ diff + tr_g + tr_r - 2 * np.sqrt(np.clip(eig, 0.0, None)).sum()
    return out


def _interval(group: ScoreGroup, results, boot, rng) -> list:
    from bench.metrics.bootstrap import generated_counts, generated_method, make_interval

    x, _ = unpack(group.gen, "Fréchet distance")
    resamples = boot.resamples if len(x) <= x.shape[1] else min(boot.resamples, FD_RESAMPLES_LARGE_N)
    note = "" if resamples == boot.resamples else f"capped from {boot.resamples}: N > d makes each a d x d eigensolve"
    if len(x) <= x.shape[1]:
        # Repeated rows lower the resample's covariance rank: with N <= d its FD is biased upward and the
        # interval can lie above the value.  Reported, flagged as the value itself is.
        note = f"N={len(x)} <= d={x.shape[1]}: resamples biased upward, interval unreliable"
    stats = fd_resamples(x, group.reference_stats, generated_counts(rng, len(x), resamples))
    r = results[0]
    return [make_interval(stats, r.value, r.n, generated_method(resamples, boot.seed, note))]


SCORER = Metric("fid", (METRIC,), stage="features", needs=("gen", "reference_stats"),
                compute=lambda g: [fd(g.gen, g.reference_stats)], interval=_interval)
