"""Reading run directories for the dashboard: pure functions, no Streamlit.

A run directory is any sub-directory of the runs root that holds a
``manifest.json`` (see docs/DESIGN.md §3 for the contract).  Runs may be
incomplete or damaged, so the loaders here never raise on bad files: they
return ``(value, error)`` pairs where ``error`` is a one-line message for the
UI (or ``None`` when all went well).

This module must stay light: it imports pandas and the standard library only
(never torch, never ``bench``), so the dashboard starts fast anywhere.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterable, Sequence

import pandas as pd

MANIFEST = "manifest.json"
SUMMARY = "summary.json"
SAMPLES = "samples.parquet"
METRICS = "metrics.parquet"  # written by `t2i-bench score`
SWEEP = "sweep.parquet"  # written by `t2i-bench sweep`
SWEEP_PLOT = "sweep.png"
# Audit outputs (DESIGN.md §3), written by `t2i-audit memorization` / `t2i-audit watermark`.
MEMORIZATION = "audit/memorization.parquet"  # one row per (generated image, neighbour rank)
MEMORIZATION_PROMPTS = "audit/memorization_prompts.parquet"  # one row per prompt: copy rate
WATERMARK = "audit/watermark.parquet"  # one row per generated image

# Columns the dashboard needs from samples.parquet (the contract has more).
REQUIRED_SAMPLE_COLUMNS = ("image_id", "prompt_id", "prompt", "category", "sample_index", "guidance", "path")
REQUIRED_METRIC_COLUMNS = ("metric", "subset", "guidance", "value")
REQUIRED_MEMORIZATION_COLUMNS = (
    "image_id", "prompt_id", "prompt", "category", "path",
    "rank", "neighbour_id", "clip_cosine", "copy_distance", "is_copy",
)  # fmt: skip
# Optional memorization columns and the value used when a writer left one out.
OPTIONAL_MEMORIZATION_COLUMNS = {
    "guidance": math.nan, "neighbour_key": "", "neighbour_caption": "", "neighbour_path": "",
    "method": "", "threshold_cosine": math.nan, "threshold_distance": math.nan,
}  # fmt: skip
REQUIRED_PROMPT_RATE_COLUMNS = ("prompt_id", "prompt", "category", "n_images", "n_copies", "copy_rate")
REQUIRED_WATERMARK_COLUMNS = ("image_id", "visible_score", "visible")
# Watermark columns shown in the image grid, with the value for a writer that left one out
# (and for images the audit did not score).
# ``invisible_checkable`` False: the image is too small for the dwtDct decoder, so "invisible: False" means unchecked.
WATERMARK_GRID_COLUMNS = {"visible_score": math.nan, "visible": None, "neighbour_pwatermark": math.nan,
                          "invisible": None, "invisible_message": "", "invisible_checkable": None}  # fmt: skip

ALL_SUBSET = "all"
CATEGORY_PREFIX = "category="
# Trade-off curve axes, first one present wins (reported names as in metrics.parquet / sweep.parquet).
ALIGNMENT_METRICS = ("CLIPScore", "clip_score", "compositional_accuracy")

MISSING = "—"  # shown for a manifest field that is absent


@dataclass(frozen=True)
class RunInfo:
    """What the run picker needs to know about one run, without reading images.

    ``complete`` is True only when the manifest says so *and* samples.parquet
    exists; ``error`` is set when the manifest itself cannot be read.
    """

    name: str
    path: Path
    created: str | None
    sort_key: float
    complete: bool
    error: str | None = None

    @property
    def label(self) -> str:
        """Text for the run picker, e.g. ``"demo (complete)"``."""
        if self.error:
            state = "unreadable"
        else:
            state = "complete" if self.complete else "incomplete"
        return f"{self.name} ({state})"


# ---------------------------------------------------------------- loading


def file_stamp(path: Path) -> tuple[int, int]:
    """``(mtime_ns, size)`` of ``path``, (0, 0) when absent: the cache key of what was read from it."""
    try:
        stat = Path(path).stat()
    except OSError:
        return 0, 0
    return stat.st_mtime_ns, stat.st_size


def load_json(path: Path) -> tuple[dict | None, str | None]:
    """Read a JSON object from ``path``; return ``(data, None)`` or ``(None, error)``."""
    path = Path(path)
    if not path.is_file():
        return None, f"{path.name} is missing"
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as exc:
        return None, f"{path.name} cannot be read: {exc}"
    except json.JSONDecodeError as exc:
        return None, f"{path.name} is not valid JSON (line {exc.lineno}, column {exc.colno}: {exc.msg})"
    if not isinstance(data, dict):
        return None, f"{path.name} is not a JSON object (found {type(data).__name__})"
    return data, None


def load_manifest(run_dir: Path) -> tuple[dict | None, str | None]:
    """Load ``<run_dir>/manifest.json``."""
    return load_json(Path(run_dir) / MANIFEST)


def load_summary(run_dir: Path) -> tuple[dict | None, str | None]:
    """Load ``<run_dir>/summary.json``."""
    return load_json(Path(run_dir) / SUMMARY)


def _read_parquet(
    path: Path, required: Sequence[str], missing_hint: str, label: str | None = None
) -> tuple[pd.DataFrame | None, str | None]:
    """Read a parquet file holding ``required`` columns; ``(df, None)`` or ``(None, error)``.

    Errors name the file as ``label`` (default: its file name).
    """
    label = label or path.name
    if not path.is_file():
        return None, f"{label} is missing ({missing_hint})"
    try:
        df = pd.read_parquet(path)
    except Exception as exc:  # pyarrow raises several types for damaged files
        first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        return None, f"{label} cannot be read: {first_line}"
    missing = [c for c in required if c not in df.columns]
    if missing:
        return None, f"{label} lacks column(s): {', '.join(missing)}"
    return df, None


def load_metrics(run_dir: Path) -> tuple[pd.DataFrame | None, str | None]:
    """Load ``metrics.parquet`` (one row per metric, subset and guidance; NaN guidance = all scales).

    ``metric`` and ``subset`` come back as strings, ``guidance`` and ``value``
    as floats, so pivots and comparisons behave whatever the writer's dtypes.
    """
    df, error = _read_parquet(Path(run_dir) / METRICS, REQUIRED_METRIC_COLUMNS, "the run has not been scored yet")
    if df is None:
        return None, error
    df = df.copy()
    try:
        df["guidance"] = pd.to_numeric(df["guidance"], errors="raise").astype(float)
        df["value"] = pd.to_numeric(df["value"], errors="raise").astype(float)
    except (TypeError, ValueError) as exc:
        return None, f"{METRICS} has non-numeric guidance or value: {exc}"
    df["metric"] = df["metric"].astype(str)
    df["subset"] = df["subset"].astype(str)
    return df.reset_index(drop=True), None


def load_sweep(run_dir: Path) -> tuple[pd.DataFrame | None, str | None]:
    """Load ``sweep.parquet`` (one row per guidance, one column per headline metric), sorted by guidance."""
    df, error = _read_parquet(Path(run_dir) / SWEEP, ("guidance",), "no guidance sweep for this run")
    if df is None:
        return None, error
    try:
        df = df.assign(guidance=pd.to_numeric(df["guidance"], errors="raise").astype(float))
    except (TypeError, ValueError) as exc:
        return None, f"{SWEEP} has a non-numeric guidance column: {exc}"
    return df.sort_values("guidance", kind="stable").reset_index(drop=True), None


def load_samples(run_dir: Path) -> tuple[pd.DataFrame | None, str | None]:
    """Load ``samples.parquet`` and add ``abs_path`` and ``exists`` columns.

    ``abs_path`` is the image's absolute path (the contract stores paths
    relative to the run dir); ``exists`` says whether that file is on disk, so
    a partly written run can be shown as such.
    """
    run_dir = Path(run_dir)
    df, error = _read_parquet(run_dir / SAMPLES, REQUIRED_SAMPLE_COLUMNS, "generation has not written it yet")
    if error:
        return None, error
    df = df.copy()
    resolved = [_resolve_image(run_dir, p) for p in df["path"]]
    df["abs_path"] = [str(p) if p else "" for p in resolved]
    df["exists"] = [bool(p) and p.is_file() for p in resolved]
    return df.reset_index(drop=True), None


def _resolve_image(run_dir: Path, rel: Any) -> Path | None:
    """Absolute path of an image listed in samples.parquet, or None if it is unusable.

    Paths are relative to the run dir; one that escapes it (``../..``, an
    absolute path elsewhere) is refused so the dashboard serves run files only.
    """
    if not isinstance(rel, str) or not rel:
        return None
    base = run_dir.resolve()
    path = (base / rel).resolve()
    return path if path.is_relative_to(base) else None


# -------------------------------------------------------------- discovery


def _created_timestamp(created: Any) -> float | None:
    """Parse the manifest's ISO ``created`` time to a POSIX timestamp, or None."""
    if not isinstance(created, str) or not created:
        return None
    try:
        moment = datetime.fromisoformat(created.replace("Z", "+00:00"))
    except ValueError:
        return None
    if moment.tzinfo is None:  # naive times are taken as UTC
        moment = moment.replace(tzinfo=timezone.utc)
    return moment.timestamp()


def discover_runs(root: Path) -> list[RunInfo]:
    """List the runs under ``root``, newest first.

    A run is a direct sub-directory holding ``manifest.json``; other
    directories are ignored.  Runs are ordered by the manifest's ``created``
    time, falling back to the manifest file's mtime, then by name.  A missing
    root gives an empty list.
    """
    root = Path(root)
    if not root.is_dir():
        return []
    runs = []
    for child in root.iterdir():
        manifest_path = child / MANIFEST
        if not child.is_dir() or not manifest_path.is_file():
            continue
        manifest, error = load_manifest(child)
        manifest = manifest or {}
        created = manifest.get("created") if isinstance(manifest.get("created"), str) else None
        stamp = _created_timestamp(created)
        if stamp is None:
            try:
                stamp = manifest_path.stat().st_mtime
            except OSError:
                stamp = 0.0
        complete = bool(manifest.get("complete") is True and (child / SAMPLES).is_file())
        runs.append(RunInfo(child.name, child, created, stamp, complete, error))
    runs.sort(key=lambda r: r.name)  # stable tie-break by name ...
    runs.sort(key=lambda r: r.sort_key, reverse=True)  # ... then newest first
    return runs


def run_problems(manifest: dict | None, samples: pd.DataFrame | None, samples_error: str | None) -> list[str]:
    """One-line notes on why a run is incomplete (empty list when it looks whole)."""
    problems = []
    if manifest is not None and manifest.get("complete") is not True:
        problems.append("the manifest does not mark this run complete (generation may be running or was interrupted)")
    if samples_error:
        problems.append(samples_error)
    if samples is not None:
        n_missing = int((~samples["exists"]).sum())
        if n_missing:
            problems.append(f"{n_missing} of {len(samples)} images listed in {SAMPLES} are missing on disk")
        expected = expected_image_count(manifest)
        if expected is not None and len(samples) < expected:
            problems.append(f"{SAMPLES} lists {len(samples)} of the {expected} images the manifest expects")
    return problems


def expected_image_count(manifest: dict | None) -> int | None:
    """Images the manifest promises: prompts × images per prompt × guidance values."""
    if not manifest:
        return None
    try:
        n_prompts = int(manifest["prompt_set"]["n_prompts"])
        per_prompt = int(manifest["images_per_prompt"])
        n_guidance = len(manifest["guidance"])
    except (KeyError, TypeError, ValueError):
        return None
    return n_prompts * per_prompt * max(n_guidance, 1)


# ------------------------------------------------------------- filtering


def categories(samples: pd.DataFrame) -> list[str]:
    """Sorted distinct categories in the samples."""
    return sorted(str(c) for c in samples["category"].dropna().unique())


def guidance_values(samples: pd.DataFrame) -> list[float]:
    """Sorted distinct guidance scales in the samples."""
    return sorted(float(g) for g in samples["guidance"].dropna().unique())


def filter_samples(
    samples: pd.DataFrame,
    categories: Iterable[str] | None = None,
    guidance: Iterable[float] | None = None,
) -> pd.DataFrame:
    """Rows matching the chosen categories and guidance values.

    ``None`` or an empty selection means "no filter" on that column.  Rows
    keep a stable order: prompt id, guidance, sample index.
    """
    mask = pd.Series(True, index=samples.index)
    cats = list(categories or [])
    if cats:
        mask &= samples["category"].astype(str).isin(cats)
    scales = [float(g) for g in (guidance or [])]
    if scales:
        mask &= samples["guidance"].astype(float).apply(lambda g: any(math.isclose(g, s) for s in scales))
    out = samples[mask]
    return out.sort_values(["prompt_id", "guidance", "sample_index"], kind="stable").reset_index(drop=True)


def page_count(n_items: int, per_page: int) -> int:
    """Number of pages needed for ``n_items`` (at least 1, so a page input always works)."""
    return max(1, math.ceil(n_items / per_page))


def page_slice(samples: pd.DataFrame, page: int, per_page: int) -> pd.DataFrame:
    """Rows on 1-based ``page``; out-of-range pages are clamped."""
    page = min(max(1, int(page)), page_count(len(samples), per_page))
    start = (page - 1) * per_page
    return samples.iloc[start : start + per_page]


# ---------------------------------------------------------------- metrics


def guidance_label(guidance: Any) -> str:
    """Column label for one guidance scale: ``"g=7.5"``; NaN/None (all scales together) is ``"all"``."""
    if guidance is None or (isinstance(guidance, float) and math.isnan(guidance)):
        return "all"
    return f"g={float(guidance):g}"


def _guidance_order(values: Iterable[Any]) -> list[str]:
    """Guidance labels with "all" first, then scales in increasing order."""
    finite = sorted({float(g) for g in values if not pd.isna(g)})
    has_all = any(pd.isna(g) for g in values)
    return (["all"] if has_all else []) + [guidance_label(g) for g in finite]


def metric_label(name: str, display_name: str | None = None, higher_is_better: bool | None = None) -> str:
    """Row label for a metric: its display name and an arrow, e.g. ``"CLIP score ↑"``, ``"FID ↓"``."""
    label = display_name or name
    if higher_is_better is None:
        return label
    return f"{label} {'↑' if higher_is_better else '↓'}"


def _plain(name: str) -> tuple[str, None]:
    return name, None


def headline_table(metrics: pd.DataFrame, describe=_plain) -> pd.DataFrame:
    """Metric × guidance pivot of the ``subset == "all"`` rows.

    Rows follow the order metrics first appear in ``metrics`` and are labelled
    by ``metric_label(*describe(name))``; ``describe(name)`` returns
    ``(display_name, higher_is_better or None)``.  Columns are ``"all"`` (every
    guidance scale together) then ``"g=<scale>"`` in increasing order.
    """
    rows = metrics[metrics["subset"] == ALL_SUBSET]
    if rows.empty:
        return pd.DataFrame()
    return _pivot(rows, "metric", [metric_label(n, *describe(n)) for n in dict.fromkeys(rows["metric"])], "metric")


def _pivot(rows: pd.DataFrame, index: str, labels: list[str], index_name: str) -> pd.DataFrame:
    order = list(dict.fromkeys(rows[index]))
    columns = _guidance_order(list(rows["guidance"]))
    table = (
        rows.assign(_g=[guidance_label(g) for g in rows["guidance"]])
        .pivot_table(index=index, columns="_g", values="value", aggfunc="first", dropna=False)
        .reindex(index=order, columns=columns)
    )
    table.index = pd.Index(labels, name=index_name)
    table.columns = pd.Index(list(table.columns), name="guidance")
    return table


def category_metrics(metrics: pd.DataFrame) -> list[str]:
    """Metrics that have per-category rows (``subset == "category=<name>"``), in order of appearance."""
    rows = metrics[metrics["subset"].str.startswith(CATEGORY_PREFIX)]
    return list(dict.fromkeys(rows["metric"]))


def category_table(metrics: pd.DataFrame, metric: str) -> pd.DataFrame:
    """Category × guidance pivot of one metric's per-category rows (categories sorted)."""
    rows = metrics[(metrics["metric"] == metric) & metrics["subset"].str.startswith(CATEGORY_PREFIX)]
    if rows.empty:
        return pd.DataFrame()
    rows = rows.assign(category=rows["subset"].str.slice(len(CATEGORY_PREFIX))).sort_values("category", kind="stable")
    return _pivot(rows, "category", list(dict.fromkeys(rows["category"])), "category")


def sweep_from_metrics(metrics: pd.DataFrame) -> pd.DataFrame:
    """The shape of sweep.parquet rebuilt from metrics.parquet: one row per guidance, one column per metric."""
    rows = metrics[(metrics["subset"] == ALL_SUBSET) & metrics["guidance"].notna()]
    if rows.empty:
        return pd.DataFrame({"guidance": pd.Series(dtype=float)})
    table = rows.pivot_table(index="guidance", columns="metric", values="value", aggfunc="first", sort=True)
    table = table.reindex(columns=list(dict.fromkeys(rows["metric"]))).reset_index()
    table.columns.name = None
    return table


def fidelity_column(table: pd.DataFrame) -> str | None:
    """The FD/FID column of a sweep table (FID preferred), or None."""
    columns = [str(c) for c in table.columns]
    return next((c for c in columns if c == "FID"), None) or next(
        (c for c in columns if c == "FD" or c.startswith("FD_")), None
    )


def alignment_column(table: pd.DataFrame) -> str | None:
    """The text-alignment column of a sweep table (CLIP score, else compositional accuracy), or None."""
    return next((c for c in ALIGNMENT_METRICS if c in table.columns), None)


def tradeoff_points(
    table: pd.DataFrame, x: str | None = None, y: str | None = None
) -> tuple[pd.DataFrame | None, str | None]:
    """Points of the guidance trade-off curve: columns ``guidance, x, y, label``, in guidance order.

    ``x`` defaults to the alignment metric and ``y`` to FD/FID.  Returns
    ``(None, reason)`` when the curve cannot be drawn (a missing axis, or fewer
    than two guidance scales with both values).
    """
    x = x or alignment_column(table)
    y = y or fidelity_column(table)
    scales = pd.to_numeric(table["guidance"], errors="coerce").dropna().unique() if "guidance" in table else []
    if len(scales) < 2:
        return None, "the curve needs at least two guidance scales (this run was scored with fewer)"
    if y is None or y not in table.columns:
        return None, "no FD/FID values per guidance scale (score with --reference to get them)"
    if x is None or x not in table.columns:
        return None, "no CLIP score or compositional accuracy per guidance scale (score with --clip, or use a shapes prompt set)"
    points = pd.DataFrame(
        {
            "guidance": pd.to_numeric(table["guidance"], errors="coerce").astype(float),
            "x": pd.to_numeric(table[x], errors="coerce").astype(float),
            "y": pd.to_numeric(table[y], errors="coerce").astype(float),
        }
    ).dropna()
    points = points.sort_values("guidance", kind="stable").reset_index(drop=True)
    if len(points) < 2:
        return None, "the curve needs at least two guidance scales scored with both metrics"
    points["label"] = [guidance_label(g) for g in points["guidance"]]
    return points, None


# ----------------------------------------------------------------- audits


def _as_bool(values: pd.Series, column: str, label: str) -> tuple[pd.Series | None, str | None]:
    """A verdict column as bool, or an error when it holds anything but true/false (0/1).

    A missing verdict is refused rather than read as "not a copy": that would be a silent wrong number.
    """
    if values.dtype == bool:
        return values, None
    ok = values.map(lambda v: (pd.api.types.is_bool(v) or pd.api.types.is_number(v)) and not pd.isna(v)
                    and v in (0, 1))  # fmt: skip
    if not ok.all():
        return None, f"{label} has a {column} value that is not true/false (row {int((~ok).to_numpy().argmax())})"
    return values.astype(bool), None


def _flag(value: Any) -> bool | None:
    """A per-image verdict that may be absent (NaN after a left join): True, False or None."""
    if value is None or (isinstance(value, float) and math.isnan(value)) or value is pd.NA:
        return None
    return bool(value)


def to_number(value: Any) -> float | None:
    """A float, or None for missing/NaN/non-numeric values (e.g. an optional summary field)."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return None if math.isnan(number) else number


def load_memorization(run_dir: Path) -> tuple[pd.DataFrame | None, str | None]:
    """Load ``audit/memorization.parquet``: one row per (generated image, neighbour rank).

    Adds ``abs_path``/``exists`` for the generated image and
    ``neighbour_abs_path``/``neighbour_exists`` for the saved neighbour copy
    (``neighbour_path`` is "" when the audit did not save it).  Optional
    columns a writer left out get neutral values (``OPTIONAL_MEMORIZATION_COLUMNS``).
    Rows come back ordered by prompt, guidance, image and rank.
    """
    run_dir = Path(run_dir)
    df, error = _read_parquet(
        run_dir / MEMORIZATION, REQUIRED_MEMORIZATION_COLUMNS, "the run has no memorization audit yet", MEMORIZATION
    )
    if df is None:
        return None, error
    df = df.copy()
    for column, default in OPTIONAL_MEMORIZATION_COLUMNS.items():
        if column not in df.columns:
            df[column] = default
    try:
        for column in ("rank", "neighbour_id"):
            df[column] = pd.to_numeric(df[column], errors="raise").astype("int64")
        for column in ("clip_cosine", "copy_distance", "guidance", "threshold_cosine", "threshold_distance"):
            df[column] = pd.to_numeric(df[column], errors="raise").astype(float)
    except (TypeError, ValueError) as exc:
        return None, f"{MEMORIZATION} has a non-numeric rank, id, score or threshold: {exc}"
    is_copy, error = _as_bool(df["is_copy"], "is_copy", MEMORIZATION)
    if is_copy is None:
        return None, error
    df["is_copy"] = is_copy
    for column in ("image_id", "prompt_id", "prompt", "category", "path", "neighbour_key", "neighbour_caption",
                   "neighbour_path", "method"):  # fmt: skip
        df[column] = df[column].fillna("").astype(str)
    for prefix, column in (("", "path"), ("neighbour_", "neighbour_path")):
        resolved = [_resolve_image(run_dir, p) for p in df[column]]
        df[f"{prefix}abs_path"] = [str(p) if p else "" for p in resolved]
        df[f"{prefix}exists"] = [bool(p) and p.is_file() for p in resolved]
    order = ["prompt_id", "guidance", "image_id", "rank"]
    return df.sort_values(order, kind="stable").reset_index(drop=True), None


def image_verdicts(hits: pd.DataFrame) -> pd.DataFrame:
    """One row per generated image from the (image, rank) rows of ``load_memorization``.

    The image's columns and its top-1 neighbour (lowest rank) come from the
    top-1 row; ``is_copy`` is True when *any* retrieved neighbour is confirmed
    a copy (kNN ranks by CLIP cosine, the copy distance confirms, so the copy
    need not be the top-1); ``copy_rank`` is the lowest such rank (-1: none)
    and ``n_neighbours`` the number of neighbours retrieved.
    """
    top = hits.loc[hits.groupby("image_id", sort=False)["rank"].idxmin()].set_index("image_id")
    copy_ranks = hits[hits["is_copy"]].groupby("image_id")["rank"].min()
    verdicts = top.assign(
        is_copy=top.index.isin(copy_ranks.index),
        copy_rank=copy_ranks.reindex(top.index).fillna(-1).astype("int64"),
        n_neighbours=hits.groupby("image_id").size().reindex(top.index).astype("int64"),
    ).reset_index()
    return verdicts.sort_values(["prompt_id", "guidance", "image_id"], kind="stable").reset_index(drop=True)


def filter_verdicts(
    verdicts: pd.DataFrame,
    copies_only: bool = False,
    categories: Iterable[str] | None = None,
    prompt_ids: Iterable[str] | None = None,
) -> pd.DataFrame:
    """Images matching the filters; an empty selection means "no filter" on that column."""
    mask = pd.Series(True, index=verdicts.index)
    if copies_only:
        mask &= verdicts["is_copy"]
    cats = [str(c) for c in (categories or [])]
    if cats:
        mask &= verdicts["category"].isin(cats)
    ids = [str(p) for p in (prompt_ids or [])]
    if ids:
        mask &= verdicts["prompt_id"].isin(ids)
    return verdicts[mask].reset_index(drop=True)


def prompt_copy_rates(verdicts: pd.DataFrame) -> pd.DataFrame:
    """Copy rate per prompt, ``n_copies / n_images``, in the columns of memorization_prompts.parquet."""
    if verdicts.empty:
        return pd.DataFrame({c: pd.Series(dtype=object) for c in REQUIRED_PROMPT_RATE_COLUMNS})
    table = verdicts.groupby("prompt_id", sort=True).agg(
        prompt=("prompt", "first"), category=("category", "first"),
        n_images=("image_id", "size"), n_copies=("is_copy", "sum"),
    ).reset_index()  # fmt: skip
    table["n_copies"] = table["n_copies"].astype("int64")
    table["copy_rate"] = table["n_copies"] / table["n_images"]
    return table[list(REQUIRED_PROMPT_RATE_COLUMNS)]


def load_memorization_prompts(run_dir: Path) -> tuple[pd.DataFrame | None, str | None]:
    """Load ``audit/memorization_prompts.parquet`` (copy rate per prompt), sorted by prompt id."""
    df, error = _read_parquet(
        Path(run_dir) / MEMORIZATION_PROMPTS, REQUIRED_PROMPT_RATE_COLUMNS,
        "the memorization audit did not write it", MEMORIZATION_PROMPTS,
    )  # fmt: skip
    if df is None:
        return None, error
    try:
        df = df.assign(
            n_images=pd.to_numeric(df["n_images"], errors="raise").astype("int64"),
            n_copies=pd.to_numeric(df["n_copies"], errors="raise").astype("int64"),
            copy_rate=pd.to_numeric(df["copy_rate"], errors="raise").astype(float),
        )
    except (TypeError, ValueError) as exc:
        return None, f"{MEMORIZATION_PROMPTS} has non-numeric counts or rates: {exc}"
    for column in ("prompt_id", "prompt", "category"):
        df[column] = df[column].fillna("").astype(str)
    return df.sort_values("prompt_id", kind="stable").reset_index(drop=True), None


def memorization_headline(summary: dict | None, verdicts: pd.DataFrame | None) -> dict | None:
    """Headline numbers of the memorization audit.

    From ``summary.json["memorization"]`` when present (``source`` =
    "summary.json"); otherwise recomputed from the per-image verdicts
    (``source`` = the parquet file).  None when neither exists.  Keys:
    n_images, n_copies, copy_rate, index, method, thresholds (dict), source.
    """
    block = _get(summary, "memorization")
    if isinstance(block, dict):
        thresholds = block.get("thresholds")
        return {
            "n_images": block.get("n_images"), "n_copies": block.get("n_copies"),
            "copy_rate": to_number(block.get("copy_rate")), "index": block.get("index"),
            "method": block.get("method"), "thresholds": thresholds if isinstance(thresholds, dict) else {},
            "source": SUMMARY,
        }  # fmt: skip
    if verdicts is None or verdicts.empty:
        return None
    n_images, n_copies = len(verdicts), int(verdicts["is_copy"].sum())
    thresholds = {
        name: float(verdicts[column].dropna().iloc[0])
        for name, column in (("cosine", "threshold_cosine"), ("distance", "threshold_distance"))
        if verdicts[column].notna().any()
    }
    methods = [m for m in dict.fromkeys(verdicts["method"]) if m]
    return {
        "n_images": n_images, "n_copies": n_copies, "copy_rate": n_copies / n_images, "index": None,
        "method": ", ".join(methods) or None, "thresholds": thresholds, "source": MEMORIZATION,
    }  # fmt: skip


def headline_mismatch(headline: dict, verdicts: pd.DataFrame) -> str | None:
    """A note when summary.json's counts disagree with memorization.parquet (a stale summary), else None."""
    if headline.get("source") != SUMMARY:
        return None
    counted = {"n_images": len(verdicts), "n_copies": int(verdicts["is_copy"].sum())}
    differ = [f"{k} {headline.get(k)} vs {v}" for k, v in counted.items() if headline.get(k) != v]
    if not differ:
        return None
    return f"{SUMMARY} and {MEMORIZATION} disagree ({'; '.join(differ)}); re-run the audit to refresh them"


def format_rate(rate: Any) -> str:
    """A rate 0..1 as a percentage, e.g. ``"33.3 %"``; missing as a dash."""
    number = to_number(rate)
    return MISSING if number is None else f"{100 * number:.1f} %"


def format_thresholds(thresholds: dict) -> str:
    """Thresholds as ``"cosine 0.95, distance 0.1"`` (whatever keys the audit recorded)."""
    parts = [f"{k} {v:g}" if isinstance(v, (int, float)) else f"{k} {v}" for k, v in thresholds.items()]
    return ", ".join(parts) or MISSING


def load_watermark(run_dir: Path) -> tuple[pd.DataFrame | None, str | None]:
    """Load ``audit/watermark.parquet`` (one row per generated image) with the grid's columns typed."""
    df, error = _read_parquet(
        Path(run_dir) / WATERMARK, REQUIRED_WATERMARK_COLUMNS, "the run has no watermark audit yet", WATERMARK
    )
    if df is None:
        return None, error
    df = df.copy()
    for column, default in WATERMARK_GRID_COLUMNS.items():
        if column not in df.columns:
            df[column] = default
    try:
        for column in ("visible_score", "neighbour_pwatermark"):
            df[column] = pd.to_numeric(df[column], errors="raise").astype(float)
    except (TypeError, ValueError) as exc:
        return None, f"{WATERMARK} has a non-numeric score: {exc}"
    df["image_id"] = df["image_id"].astype(str)
    df["invisible_message"] = df["invisible_message"].fillna("").astype(str)
    for column in ("visible", "invisible", "invisible_checkable"):
        df[column] = [_flag(v) for v in df[column]]
    return df.reset_index(drop=True), None


def attach_watermark(samples: pd.DataFrame, watermark: pd.DataFrame | None) -> pd.DataFrame:
    """``samples`` with the watermark columns of ``WATERMARK_GRID_COLUMNS`` joined on ``image_id``.

    Images the audit did not score get the missing values (NaN / None / "").
    Without a watermark table the samples come back unchanged.
    """
    if watermark is None:
        return samples
    scores = watermark.drop_duplicates("image_id", keep="last")[["image_id", *WATERMARK_GRID_COLUMNS]]
    merged = samples.drop(columns=[c for c in WATERMARK_GRID_COLUMNS if c in samples.columns]).merge(
        scores, on="image_id", how="left", validate="many_to_one"
    )
    merged["invisible_message"] = merged["invisible_message"].fillna("")
    for column in ("visible", "invisible", "invisible_checkable"):
        merged[column] = [_flag(v) for v in merged[column]]
    return merged


def watermark_note(row: Any) -> str | None:
    """Plain-text watermark line for one grid image, or None when the image has no watermark scores.

    E.g. ``"visible watermark 0.91 (flagged) · invisible: 'test' · neighbours' pwatermark 0.42"``.
    """
    score = to_number(row.get("visible_score"))
    visible, invisible = _flag(row.get("visible")), _flag(row.get("invisible"))
    pwatermark = to_number(row.get("neighbour_pwatermark"))
    if score is None and visible is None and invisible is None and pwatermark is None:
        return None
    parts = []
    if score is not None or visible is not None:
        flagged = " (flagged)" if visible else ""
        parts.append(f"visible watermark {MISSING if score is None else f'{score:.2f}'}{flagged}")
    if invisible is not None and _flag(row.get("invisible_checkable")) is False:
        parts.append("invisible: not checkable (too small)")
    elif invisible is not None:
        message = str(row.get("invisible_message") or "")
        if invisible and message:
            parts.append(f"invisible: {message!r}")
        else:
            parts.append(f"invisible: {'yes' if invisible else 'none'}")
    if pwatermark is not None:
        parts.append(f"neighbours' pwatermark {pwatermark:.2f}")
    return " · ".join(parts)


def watermark_headline(summary: dict | None) -> str | None:
    """One line from ``summary.json["watermark"]`` for above the grid, or None without one."""
    block = _get(summary, "watermark")
    if not isinstance(block, dict):
        return None
    text = (
        f"Watermark audit of {block.get('n_images', MISSING)} images: "
        f"visible watermark in {format_rate(block.get('visible_rate'))}"
    )
    details = []
    if block.get("probe"):
        details.append(f"probe {block['probe']}")
    if to_number(block.get("threshold")) is not None:
        details.append(f"threshold {float(block['threshold']):g}")
    if details:
        text += f" ({', '.join(details)})"
    if to_number(block.get("invisible_rate")) is not None:
        text += f"; invisible watermark decoded in {format_rate(block['invisible_rate'])}"
    elif block.get("n_invisible_checkable") == 0:
        text += "; invisible watermark not checkable (images under the decoder's minimum size)"
    if to_number(block.get("neighbour_pwatermark_mean")) is not None:
        text += f"; neighbours' mean pwatermark {float(block['neighbour_pwatermark_mean']):.2f}"
    return text + "."


# -------------------------------------------------------------- rendering


_MARKDOWN_SPECIAL = re.compile(r"([\\`*_{}\[\]()#+\-.!|<>$~:&^=\"'])")


def escape_markdown(text: Any) -> str:
    """Backslash-escape Markdown/HTML punctuation so user text shows literally.

    Streamlit renders captions and table cells as Markdown (with LaTeX ``$``
    and ``:color[...]`` directives); prompts are user text, so every special
    character is escaped.  Newlines become spaces.
    """
    text = " ".join(str(text).split())
    return _MARKDOWN_SPECIAL.sub(r"\\\1", text)


def truncate(text: Any, limit: int = 80) -> str:
    """``text`` cut to ``limit`` characters with an ellipsis."""
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"


def caption_text(row: Any, limit: int = 80) -> str:
    """Plain-text caption for one sample: prompt (truncated), category, guidance, sample."""
    return (
        f"{truncate(row['prompt'], limit)} · {row['category']} · "
        f"g={float(row['guidance']):g} · sample {int(row['sample_index'])}"
    )


def _get(mapping: Any, *keys: str) -> Any:
    """Nested ``mapping[k1][k2]...`` or None when any level is missing."""
    for key in keys:
        if not isinstance(mapping, dict) or key not in mapping:
            return None
        mapping = mapping[key]
    return mapping


def _show(value: Any) -> str:
    """A manifest value as short text (lists joined, missing as a dash)."""
    if value is None or value == "":
        return MISSING
    if isinstance(value, (list, tuple)):
        return ", ".join(f"{v:g}" if isinstance(v, float) else str(v) for v in value) or MISSING
    return str(value)


def manifest_facts(manifest: dict, n_images: int | None) -> list[tuple[str, str]]:
    """The headline (label, value) pairs shown above the image grid."""
    sha = _get(manifest, "prompt_set", "sha256")
    prompt_set = " ".join(
        part
        for part in (
            _show(_get(manifest, "prompt_set", "name")),
            f"v{_get(manifest, 'prompt_set', 'version')}" if _get(manifest, "prompt_set", "version") else "",
            f"(sha256 {str(sha)[:12]})" if sha else "",
        )
        if part
    )
    subset = _get(manifest, "prompt_set", "subset")
    if subset:
        prompt_set += f", subset {subset}"
    size = (
        f"{manifest['width']}×{manifest['height']}"
        if manifest.get("width") and manifest.get("height")
        else MISSING
    )
    return [
        ("Model", _show(_get(manifest, "model", "ref"))),
        ("Model kind", _show(_get(manifest, "model", "kind"))),
        ("Pipeline", _show(manifest.get("pipeline_class"))),
        ("Scheduler", _show(manifest.get("scheduler"))),
        ("Steps", _show(manifest.get("steps"))),
        ("Guidance", _show(manifest.get("guidance"))),
        ("Guidance formulation", _show(manifest.get("guidance_formulation"))),
        ("Seed", _show(manifest.get("seed"))),
        ("Dtype", _show(manifest.get("dtype"))),
        ("Device", _show(manifest.get("device"))),
        ("Size", size),
        ("Prompt set", prompt_set),
        ("Images", MISSING if n_images is None else str(n_images)),
        ("Created", _show(manifest.get("created"))),
    ]


def fact_table(facts: Sequence[tuple[str, str]]) -> pd.DataFrame:
    """Facts as a one-column DataFrame indexed by label, Markdown-escaped for ``st.table``."""
    return pd.DataFrame(
        {"Value": [escape_markdown(v) for _, v in facts]},
        index=pd.Index([label for label, _ in facts], name=""),
    )
