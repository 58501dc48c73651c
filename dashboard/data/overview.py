"""Every run under the runs root in one table (the Overview page): pure pandas, no Streamlit.

One row per run (``discovery.discover_runs``, newest first): its status
(complete / incomplete / damaged) and the one-line reason when it is not
complete, model, prompt set, images listed against images expected, the
headline metrics (all images, all guidance scales together) each with its 95%
interval, and the audits ``summary.json["audits"]`` lists.

Headline numbers come from ``metrics.parquet`` (``value``, ``ci_low``,
``ci_high`` of the ``subset == "all"`` rows with NaN guidance); a run whose
metrics.parquet is missing or damaged falls back to ``summary.json["metrics"]["all"]``
with its intervals under ``summary.json["metric_intervals"]["all"]`` (``[low, high]``).
Nothing here raises on a damaged file: a reason goes into the row's ``note``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable
from urllib.parse import quote

import pandas as pd

from bench import contract as C
from dashboard.data.audits import list_audits
from dashboard.data.discovery import RunInfo, expected_image_count
from dashboard.data.reading import file_stamp, load_manifest, load_summary, read_table
from dashboard.data.text import MISSING, dig, format_value, to_number, truncate

ALL_KEY = "all"  # summary.json's key for all guidance scales together
INTERVALS_KEY = "metric_intervals"
NOTE_LIMIT = 160  # characters of a damage / incompleteness reason in the table
#: The fixed columns of ``overview_table``, in order; metric columns follow them.
BASE_COLUMNS = ("run", "open", "status", "note", "model", "prompt_set", "n_images", "n_expected", "audits")
CI_SUFFIX = " 95% CI"


@dataclass
class RunOverview:
    """What the Overview page shows of one run."""

    name: str
    status: str  # "complete" | "incomplete" | "damaged"
    note: str = ""  # one line: why damaged / incomplete ("" when complete)
    model: str = MISSING
    prompt_set: str = MISSING
    n_images: int | None = None
    n_expected: int | None = None
    audits: list[str] = field(default_factory=list)
    metrics: dict[str, tuple[float, float | None, float | None]] = field(default_factory=dict)  # value, lo, hi
    metrics_source: str = ""


def run_link(name: str, url_path: str = "runs") -> str:
    """The relative URL of the Runs page showing run ``name``: ``runs?run=NAME`` (name URL-quoted)."""
    return f"{url_path}?run={quote(name, safe='')}"


def headline_from_metrics(metrics: pd.DataFrame) -> dict[str, tuple[float, float | None, float | None]]:
    """``{metric: (value, ci_low, ci_high)}`` of the all-images rows; NaN guidance (all scales) preferred,
    else the only guidance scale there is.  Bounds are None when the row has no interval."""
    rows = metrics[metrics["subset"] == C.ALL_SUBSET]
    pooled = rows[rows["guidance"].isna()]
    if pooled.empty and rows["guidance"].nunique() == 1:
        pooled = rows
    out: dict[str, tuple[float, float | None, float | None]] = {}
    for row in pooled.itertuples(index=False):
        if row.metric in out:
            continue
        value = to_number(row.value)
        if value is None:
            continue
        out[str(row.metric)] = (value, to_number(getattr(row, "ci_low", None)), to_number(getattr(row, "ci_high", None)))
    return out


def headline_from_summary(summary: dict | None) -> dict[str, tuple[float, float | None, float | None]]:
    """``{metric: (value, ci_low, ci_high)}`` from ``summary.json["metrics"]["all"]`` and ``["metric_intervals"]["all"]``."""
    values = dig(summary, "metrics", ALL_KEY)
    if not isinstance(values, dict):
        return {}
    intervals = dig(summary, INTERVALS_KEY, ALL_KEY)
    intervals = intervals if isinstance(intervals, dict) else {}
    out: dict[str, tuple[float, float | None, float | None]] = {}
    for metric, value in values.items():
        number = to_number(value)
        if number is None:
            continue
        bounds = intervals.get(metric)
        lo = hi = None
        if isinstance(bounds, (list, tuple)) and len(bounds) == 2:
            lo, hi = to_number(bounds[0]), to_number(bounds[1])
        out[str(metric)] = (number, lo, hi)
    return out


def _audit_labels(summary: dict | None) -> list[str]:
    audits, _ = list_audits(summary)
    labels = []
    for audit in audits:
        value = audit.headline_value
        labels.append(audit.display_name if value is None else f"{audit.display_name} ({format_value(audit.headline, value)})")
    return labels


def _prompt_set(manifest: dict) -> str:
    name, version = dig(manifest, "prompt_set", "name"), dig(manifest, "prompt_set", "version")
    if not name:
        return MISSING
    return f"{name}@{version}" if version else str(name)


def run_overview(run: RunInfo) -> RunOverview:
    """The overview of one run; a damaged file becomes the row's one-line ``note``, never an exception."""
    if run.damage:
        status = "damaged"
    else:
        status = "complete" if run.complete else "incomplete"
    row = RunOverview(run.name, status, truncate(run.damage, NOTE_LIMIT) if run.damage else "")
    manifest, manifest_error = load_manifest(run.path)
    manifest = manifest or {}
    summary, _ = load_summary(run.path)
    row.model = str(dig(manifest, "model", "ref") or (summary or {}).get("model") or MISSING)
    row.prompt_set = _prompt_set(manifest)
    row.n_expected = expected_image_count(manifest) if manifest else None
    notes: list[str] = []
    if not manifest_error:
        if manifest.get("complete") is not True:
            notes.append("generation has not finished (the manifest does not mark the run complete)")
        samples, samples_error = read_table(run.path, C.SAMPLES_TABLE)
        if samples is not None:
            row.n_images = len(samples)
        elif not run.damage and samples_error:
            notes.append(samples_error)
        if row.n_images is not None and row.n_expected is not None and row.n_images < row.n_expected:
            notes.append(f"{row.n_images} of the {row.n_expected} images the manifest expects")
    row.audits = _audit_labels(summary)

    metrics, metrics_error = read_table(run.path, C.METRICS_TABLE)
    if metrics is not None:
        row.metrics, row.metrics_source = headline_from_metrics(C.upgrade_metric_names(metrics)), C.METRICS
    else:
        row.metrics = headline_from_summary(summary)
        row.metrics_source = C.SUMMARY if row.metrics else ""
        if C.METRICS_TABLE.path(run.path).is_file() and metrics_error:
            notes.append(metrics_error + (f" (headline numbers from {C.SUMMARY})" if row.metrics else ""))
    if notes and not row.note:  # a damaged run keeps its damage reason: the one line that matters
        row.note = truncate("; ".join(notes), NOTE_LIMIT)
    return row


def metric_order(rows: Iterable[RunOverview]) -> list[str]:
    """Every headline metric of the runs, in order of first appearance."""
    order: dict[str, None] = {}
    for row in rows:
        order.update(dict.fromkeys(row.metrics))
    return list(order)


def format_interval(lo: Any, hi: Any) -> str:
    """``"24.1 – 29.3"`` (4 significant digits), or a dash when the interval is absent."""
    lo, hi = to_number(lo), to_number(hi)
    if lo is None or hi is None:
        return MISSING
    return f"{lo:.4g} – {hi:.4g}"


def overview_table(rows: list[RunOverview], url_path: str = "runs") -> pd.DataFrame:
    """One row per run: ``BASE_COLUMNS``, then per metric its value (float) and ``"<metric> 95% CI"`` (text)."""
    metrics = metric_order(rows)
    records = []
    for row in rows:
        record: dict[str, Any] = {
            "run": row.name, "open": run_link(row.name, url_path), "status": row.status, "note": row.note,
            "model": row.model, "prompt_set": row.prompt_set,
            "n_images": row.n_images if row.n_images is not None else pd.NA,
            "n_expected": row.n_expected if row.n_expected is not None else pd.NA,
            "audits": ", ".join(row.audits) or MISSING,
        }  # fmt: skip
        for metric in metrics:
            value, lo, hi = row.metrics.get(metric, (math.nan, None, None))
            record[metric] = value
            record[metric + CI_SUFFIX] = format_interval(lo, hi)
        records.append(record)
    columns = list(BASE_COLUMNS) + [c for m in metrics for c in (m, m + CI_SUFFIX)]
    table = pd.DataFrame.from_records(records, columns=columns)
    for column in ("n_images", "n_expected"):
        table[column] = table[column].astype("Int64")
    for metric in metrics:
        table[metric] = table[metric].astype("float64")
    return table


def load_overview(runs: list[RunInfo], url_path: str = "runs") -> tuple[pd.DataFrame, list[RunOverview]]:
    """``overview_table`` of ``runs`` (as ``discover_runs`` lists them) and the per-run overviews."""
    rows = [run_overview(run) for run in runs]
    return overview_table(rows, url_path), rows


def run_stamp(run_dir: Path) -> tuple:
    """What the overview of a run depends on (manifest, summary, samples, metrics): the cache key."""
    run_dir = Path(run_dir)
    return tuple(file_stamp(p) for p in (run_dir / C.MANIFEST, run_dir / C.SUMMARY, C.SAMPLES_TABLE.path(run_dir),
                                         C.METRICS_TABLE.path(run_dir)))  # fmt: skip
