"""Benchmark metrics: one module per metric, each a pure numeric core plus metadata.

Every module declares ``MetricInfo`` (what the dashboard shows) and a ``SCORER``
(``bench.metrics.base.Metric``: the pass it runs in, the inputs it needs, and
``compute``).  ``METRICS`` is the registry ``t2i-bench score`` loops over;
third-party metrics join it through the ``t2i_audit.metrics`` entry point group
(an entry names a ``Metric``).  ``REGISTRY`` maps metadata names to
``MetricInfo``.  Numbers come from numpy/scipy in float64; this package does not
import torch, so reading the registry is cheap.

    from bench.metrics import fd, kid, cmmd, precision_recall, inception_score
    fd(gen_features, ref_features).value     # "FID" for Inception pool3, else "FD_<extractor>"
"""

from __future__ import annotations

from bench.contract import parse_metric_name
from bench.metrics.base import Metric, MetricInfo, MetricResult, MetricWarning, ScoreGroup
from bench.metrics.clip_score import ClipScoreReport, clip_score_report, clip_scores
from bench.metrics.cmmd import cmmd, mmd_rbf
from bench.metrics.compositional import CompositionalReport, compositional_accuracy
from bench.metrics.fid import GaussianStats, StreamingGaussian, fd, fd_metric_name, frechet_distance
from bench.metrics.inception_score import inception_score
from bench.metrics.kid import kid, polynomial_mmd2
from bench.metrics.precision_recall import precision_recall
from bench.registry import Registry


def _as_metric(entry) -> Metric:
    if not isinstance(entry, Metric):
        raise TypeError(f"a metric entry must be a bench.metrics.base.Metric, got {type(entry).__name__}")
    return entry


#: The metrics ``t2i-bench score`` runs, in this order (name -> ``Metric``, imported lazily).
METRICS: Registry[Metric] = Registry("metric", entry_point_group="t2i_audit.metrics", check=_as_metric)
for _name, _module in (("fid", "fid"), ("kid", "kid"), ("is", "inception_score"),
                       ("precision_recall", "precision_recall"), ("clip_score", "clip_score"), ("cmmd", "cmmd"),
                       ("compositional_accuracy", "compositional")):
    METRICS.add(_name, f"bench.metrics.{_module}:SCORER")


def _infos() -> dict[str, MetricInfo]:
    return {info.name: info for _, metric in METRICS.items() for info in metric.infos}


def __getattr__(name: str):
    # ``REGISTRY`` (metadata name -> MetricInfo, built-in metrics and plugins) is built on
    # first use, so importing this package reads no entry points.
    if name == "REGISTRY":
        return _infos()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

#: Reported names that are not their metadata name in lower case.
_REPORTED = {"fd": "fid", "clipscore": "clip_score"}


def metric_info(name: str) -> MetricInfo:
    """Metadata for a metric name as registered ("fid") or as reported ("FID", "FD_dinov2-vitl14", "KID",
    "precision_efficientnet-lite0", "IS")."""
    base, _ = parse_metric_name(name)
    key = base.lower()
    key = _REPORTED.get(key, key)
    infos = _infos()
    if key not in infos:
        raise KeyError(f"unknown metric {name!r}; known: {', '.join(infos)}")
    return infos[key]


__all__ = [
    "METRICS", "REGISTRY", "ClipScoreReport", "CompositionalReport", "GaussianStats", "Metric", "MetricInfo",
    "MetricResult", "MetricWarning", "ScoreGroup", "StreamingGaussian", "clip_score_report", "clip_scores", "cmmd",
    "compositional_accuracy", "fd", "fd_metric_name", "frechet_distance", "inception_score", "kid",
    "metric_info", "mmd_rbf", "polynomial_mmd2", "precision_recall",
]  # fmt: skip
