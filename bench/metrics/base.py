"""What every metric module shares: metadata, results, input checks.

Metric modules are numpy/scipy only (no torch), so the dashboard can import
``bench.metrics`` for metadata without loading models.
"""

from __future__ import annotations

import warnings
from dataclasses import asdict, dataclass, field
from typing import Any, Callable, Mapping, Sequence, Union

import numpy as np

from bench.errors import UserError
from bench.features.base import FeatureSet


@dataclass(frozen=True)
class MetricInfo:
    """Metadata the dashboard reads (declared by each metric module, collected in ``bench.metrics.REGISTRY``)."""

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
    subset: str = "all"  # or "category=<name>" for a per-category row
    # Per-image values whose mean is ``value`` and each image's prompt id, for the bootstrap over prompts
    # (``bench.metrics.bootstrap.prompt_intervals``); not written to metrics.parquet.
    values: np.ndarray | None = field(default=None, compare=False, repr=False)
    prompts: Sequence[Any] | None = field(default=None, compare=False, repr=False)
    # The image id of each value (overall rows): written to image_scores.parquet by ``bench.score``.
    image_ids: Sequence[Any] | None = field(default=None, compare=False, repr=False)

    def to_row(self) -> dict[str, Any]:
        """A row for metrics.parquet (the caller adds guidance and reference)."""
        return {
            "metric": self.metric,
            "subset": self.subset,
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
    # Checked block by block: a memory-mapped cache is read once, never held as an N x d bool array.
    if not all(np.isfinite(block).all() for _, block in row_blocks(arr, float64=False)):
        raise UserError(f"{what}: features contain NaN or inf: re-extract them (check the model dtype)")
    if float64:
        arr = arr.astype(np.float64, copy=False)
    return arr, key


#: Rows per block when a metric reads its features in chunks (FD's accumulator, precision/recall's and
#: CMMD's distance tiles, the finiteness check): memory stays O(ROW_BLOCK x max(ROW_BLOCK, d)) whatever N is,
#: so features can stay memory-mapped (``bench.features.cache``).
ROW_BLOCK = 1024


def row_blocks(arr: np.ndarray, block: int = ROW_BLOCK, float64: bool = True):
    """(start, rows) of ``arr`` in blocks of ``block`` rows, each cast to float64 unless ``float64=False``."""
    for start in range(0, len(arr), block):
        rows = np.asarray(arr[start : start + block])
        yield start, (rows.astype(np.float64) if float64 else rows)


def squared_norms(arr: np.ndarray, block: int = ROW_BLOCK) -> np.ndarray:
    """||x_i||² of every row, in float64, block by block."""
    out = np.empty(len(arr))
    for start, rows in row_blocks(arr, block):
        out[start : start + len(rows)] = (rows * rows).sum(axis=1)
    return out


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


# ------------------------------------------------------------- scoring plug-in


#: The passes of ``t2i-bench score`` (``bench.score``); a metric declares the one it runs in.
#:   "features": once per --features extractor: ``gen``, ``reference``, ``reference_stats``, ``logits``
#:   "clip":     with --clip: ``gen`` (image embeddings), ``text_emb``, ``truncated``, ``reference``
#:   "specs":    for prompt sets the shapes world can judge: ``images``, ``specs``
STAGES = ("features", "clip", "specs")


@dataclass
class ScoreGroup:
    """The inputs of one metric call: the images of one (pass, guidance scale) group.

    Fields a pass cannot provide stay None; ``bench.score`` calls a metric only
    when every field it ``needs`` is present.
    """

    stage: str
    samples: Any  # the group's rows of samples.parquet (images that could be read), a DataFrame
    gen: FeatureSet | None = None
    reference: FeatureSet | None = None
    reference_stats: Any = None  # bench.metrics.fid.GaussianStats
    logits: np.ndarray | None = None  # Inception logits of ``gen`` (Inception Score)
    text_emb: np.ndarray | None = None  # the prompt's embedding per row of ``samples``
    truncated: np.ndarray | None = None
    images: Sequence[Any] | None = None  # image paths, row-aligned with ``samples``
    specs: Mapping[str, Any] | None = None  # prompt id -> shapes-world spec
    options: Mapping[str, Any] = field(default_factory=dict)  # ScoreSpec settings (kid_subset_size, pr_k, ...)


@dataclass(frozen=True)
class Metric:
    """A metric as ``t2i-bench score`` runs it: entries of ``bench.metrics.METRICS``.

    ``compute(group)`` returns the metric's results for one group; it is called
    in the pass ``stage`` for groups that have every field in ``needs`` and at
    least ``min_images`` images.  ``infos`` describe the names it reports.

    ``interval(group, results, boot, rng)``, when given, returns one
    ``bench.metrics.bootstrap.Interval`` (or None) per result of ``compute``:
    ``bench.score`` calls it when ``--bootstrap`` is on, with a generator seeded
    from the score's seed (``bench.metrics.bootstrap``; docs/DESIGN.md §6).
    """

    name: str
    infos: tuple[MetricInfo, ...]
    stage: str
    needs: tuple[str, ...]
    compute: Callable[[ScoreGroup], Sequence[MetricResult]]
    min_images: int = 2
    interval: Callable[..., Sequence[Any]] | None = None

    def __post_init__(self) -> None:
        if self.stage not in STAGES:
            raise ValueError(f"metric {self.name!r}: stage {self.stage!r} is not one of {STAGES}")
        unknown = [n for n in self.needs if n not in ScoreGroup.__dataclass_fields__]
        if unknown:
            raise ValueError(f"metric {self.name!r} needs unknown inputs {unknown}")

    @property
    def uses_reference(self) -> bool:
        return any(n in ("reference", "reference_stats") for n in self.needs)

    def applies(self, group: ScoreGroup) -> bool:
        return (group.stage == self.stage and len(group.samples) >= self.min_images
                and all(getattr(group, n) is not None for n in self.needs))


#: The per-category row of the prompts without a category, in a set where others have one.
UNCATEGORISED = "(none)"


def category_results(per_group, metric: str, value_col: str, n_col: str, extractor: str | None,
                     per_image=None, image_value_col: str | None = None) -> list[MetricResult]:
    """One ``subset="category=<name>"`` result per row of a report's per-category table.

    With ``per_image`` (the report's per-image table) and ``image_value_col``, each result carries its
    images' values and prompt ids for the bootstrap over prompts."""
    from bench.contract import CATEGORY_PREFIX

    out = []
    names = [str(c) for c in per_group["category"]] if "category" in per_group else []
    if not any(names):  # a prompt file without categories: its one group is the "all" row
        return out
    for _, g in per_group.iterrows():
        values = prompts = None
        if per_image is not None and image_value_col is not None:
            rows = per_image[per_image["category"] == g["category"]]
            values = rows[image_value_col].to_numpy(dtype=np.float64)
            prompts = rows["prompt_id"].tolist()
        out.append(MetricResult(metric, float(g[value_col]), n=int(g[n_col]), extractor=extractor,
                                subset=f"{CATEGORY_PREFIX}{g['category'] or UNCATEGORISED}", values=values,
                                prompts=prompts))
    return out
