"""What every metric module shares: metadata, results, input checks.

Metric modules are numpy/scipy only (no torch), so the dashboard can import
``bench.metrics`` for metadata without loading models.
"""

from __future__ import annotations

import warnings
from dataclasses import asdict, dataclass, field
from typing import Any, Mapping, Union

import numpy as np

from bench.errors import UserError
from bench.features.base import FeatureSet


@dataclass(frozen=True)
class MetricInfo:
    """Metadata the dashboard reads (one per metric module, collected in ``bench.metrics.REGISTRY``)."""

    name: str  # registry key, lower case
    display_name: str  # what tables and plots show
    higher_is_better: bool
    paper: str  # citation of the definition
    formula: str  # one line, plain text
    inputs: str  # what it is computed from
    url: str = ""
    lower_bound: float | None = None
    upper_bound: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class MetricResult:
    """One number: ``metric`` is the reported name (e.g. "FID", "FD_efficientnet-lite0", "KID")."""

    metric: str
    value: float
    n: int  # generated (or scored) samples used
    n_ref: int | None = None  # reference samples, for two-sample metrics
    extractor: str | None = None  # extractor key of the features
    details: Mapping[str, Any] = field(default_factory=dict)

    def to_row(self) -> dict[str, Any]:
        """A row for metrics.parquet (the caller adds subset and guidance)."""
        return {
            "metric": self.metric,
            "value": float(self.value),
            "n": int(self.n),
            "n_ref": None if self.n_ref is None else int(self.n_ref),
            "extractor": self.extractor,
            **{k: v for k, v in self.details.items() if np.isscalar(v) or v is None},
        }


class MetricWarning(UserWarning):
    """A number that is computed but may be unreliable (e.g. singular covariance)."""


def warn(message: str) -> None:
    warnings.warn(message, MetricWarning, stacklevel=3)


Features = Union[np.ndarray, FeatureSet]


def unpack(features: Features, what: str, min_n: int = 2, float64: bool = True) -> tuple[np.ndarray, str | None]:
    """-> ([N, d] array, float64 unless ``float64=False``; extractor key or None); UserError on unusable input."""
    key = None
    if isinstance(features, FeatureSet):
        key, features = features.extractor, features.features
    arr = np.asarray(features)
    if arr.ndim != 2 or arr.shape[1] < 1:
        raise UserError(f"{what}: expected a 2-D feature array [N, d], got shape {arr.shape}")
    if arr.shape[0] < min_n:
        raise UserError(f"{what}: needs at least {min_n} images, got {arr.shape[0]}: generate or select more images")
    if float64:
        arr = arr.astype(np.float64, copy=False)
    if not np.isfinite(arr).all():
        raise UserError(f"{what}: features contain NaN or inf: re-extract them (check the model dtype)")
    return arr, key


def check_comparable(key_a: str | None, key_b: str | None, dim_a: int, dim_b: int, what: str) -> str | None:
    """Refuse features of different extractors; returns the shared key (or the one known)."""
    if key_a is not None and key_b is not None and key_a != key_b:
        raise UserError(
            f"{what}: features come from different extractors ({key_a} vs {key_b}): "
            f"extract both sets with the same extractor and settings"
        )
    if dim_a != dim_b:
        raise UserError(f"{what}: feature dimensions differ ({dim_a} vs {dim_b}): use the same extractor for both sets")
    return key_a if key_a is not None else key_b
