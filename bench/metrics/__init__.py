"""Benchmark metrics: one module per metric, each a pure numeric core plus metadata.

Every module declares ``MetricInfo`` (what the dashboard shows); ``REGISTRY`` maps
metric names to them.  Numbers come from numpy/scipy in float64; this package does
not import torch, so reading the registry is cheap.

    from bench.metrics import fd, kid, cmmd, precision_recall, inception_score
    fd(gen_features, ref_features).value     # "FID" for Inception pool3, else "FD_<extractor>"
"""

from __future__ import annotations

from bench.metrics import clip_score as _clip_score
from bench.metrics import cmmd as _cmmd
from bench.metrics import compositional as _compositional
from bench.metrics import fid as _fid
from bench.metrics import inception_score as _is
from bench.metrics import kid as _kid
from bench.metrics import precision_recall as _pr
from bench.metrics.base import MetricInfo, MetricResult, MetricWarning
from bench.metrics.clip_score import ClipScoreReport, clip_score_report, clip_scores
from bench.metrics.cmmd import cmmd, mmd_rbf
from bench.metrics.compositional import CompositionalReport, compositional_accuracy
from bench.metrics.fid import GaussianStats, StreamingGaussian, fd, fd_metric_name, frechet_distance
from bench.metrics.inception_score import inception_score
from bench.metrics.kid import kid, polynomial_mmd2
from bench.metrics.precision_recall import precision_recall

#: name -> metadata, for the dashboard and the CLI.
REGISTRY: dict[str, MetricInfo] = {
    m.name: m
    for m in (
        _fid.METRIC,
        _kid.METRIC,
        _is.METRIC,
        _clip_score.METRIC,
        _cmmd.METRIC,
        *_pr.METRICS,
        _compositional.METRIC,
    )
}


def metric_info(name: str) -> MetricInfo:
    """Metadata for a metric name as registered ("fid") or as reported ("FID", "FD_dinov2-vitl14", "KID", "IS")."""
    key = name.lower()
    if key in ("fid", "fd") or key.startswith("fd_"):
        key = "fid"
    elif key.startswith("kid_"):
        key = "kid"
    key = {"clipscore": "clip_score"}.get(key, key)
    if key not in REGISTRY:
        raise KeyError(f"unknown metric {name!r}; known: {', '.join(REGISTRY)}")
    return REGISTRY[key]


__all__ = [
    "REGISTRY",
    "ClipScoreReport",
    "CompositionalReport",
    "GaussianStats",
    "MetricInfo",
    "MetricResult",
    "MetricWarning",
    "StreamingGaussian",
    "clip_score_report",
    "clip_scores",
    "cmmd",
    "compositional_accuracy",
    "fd",
    "fd_metric_name",
    "frechet_distance",
    "inception_score",
    "kid",
    "metric_info",
    "mmd_rbf",
    "polynomial_mmd2",
    "precision_recall",
]
