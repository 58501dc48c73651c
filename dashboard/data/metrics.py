"""Scores of a run (the Metrics page): ``metrics.parquet`` and ``sweep.parquet``, pivots, the trade-off curve.

Tables and subsets are named by ``bench.contract`` (``METRICS_TABLE``,
``SWEEP_TABLE``, ``ALL_SUBSET``, ``CATEGORY_PREFIX``); metric names follow its
naming rule, and tables of runs scored before the rule are upgraded on read
(``upgrade_metric_names``: "precision" -> "precision_<extractor>").
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Iterable

import pandas as pd

from bench import contract as C
from dashboard.data.reading import read_table

# Trade-off curve axes, first one present wins (reported names as in metrics.parquet / sweep.parquet).
ALIGNMENT_METRICS = ("CLIPScore", "clip_score", "compositional_accuracy")


def load_metrics(run_dir: Path) -> tuple[pd.DataFrame | None, str | None]:
    """Load ``metrics.parquet`` (one row per metric, subset and guidance; NaN guidance = all scales).

    Typed by the contract (``metric``/``subset`` strings, ``guidance``/``value``
    floats), with old metric names upgraded to the naming rule.
    """
    df, error = read_table(run_dir, C.METRICS_TABLE)
    if df is None:
        return None, error
    return C.upgrade_metric_names(df).reset_index(drop=True), None


def load_sweep(run_dir: Path) -> tuple[pd.DataFrame | None, str | None]:
    """Load ``sweep.parquet`` (one row per guidance, one column per headline metric), sorted by guidance."""
    df, error = read_table(run_dir, C.SWEEP_TABLE)
    if df is None:
        return None, error
    return df.sort_values("guidance", kind="stable").reset_index(drop=True), None


def guidance_label(guidance: Any) -> str:
    """Column label for one guidance scale: ``"g=7.5"``; NaN/None (all scales together) is ``"all"``."""
    if guidance is None or (isinstance(guidance, float) and math.isnan(guidance)):
        return "all"
    return f"g={float(guidance):g}"


def _guidance_order(values: Iterable[Any]) -> list[str]:
    """Guidance labels with "all" first, then scales in increasing order."""
    values = list(values)
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
    rows = metrics[metrics["subset"] == C.ALL_SUBSET]
    if rows.empty:
        return pd.DataFrame()
    return _pivot(rows, "metric", [metric_label(n, *describe(n)) for n in dict.fromkeys(rows["metric"])], "metric")


def _pivot(rows: pd.DataFrame, index: str, labels: list[str], index_name: str) -> pd.DataFrame:
    order = list(dict.fromkeys(rows[index]))
    columns = _guidance_order(rows["guidance"])
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
    rows = metrics[metrics["subset"].str.startswith(C.CATEGORY_PREFIX)]
    return list(dict.fromkeys(rows["metric"]))


def category_table(metrics: pd.DataFrame, metric: str) -> pd.DataFrame:
    """Category × guidance pivot of one metric's per-category rows (categories sorted)."""
    rows = metrics[(metrics["metric"] == metric) & metrics["subset"].str.startswith(C.CATEGORY_PREFIX)]
    if rows.empty:
        return pd.DataFrame()
    rows = rows.assign(category=rows["subset"].str.slice(len(C.CATEGORY_PREFIX))).sort_values(
        "category", kind="stable"
    )
    return _pivot(rows, "category", list(dict.fromkeys(rows["category"])), "category")


def sweep_from_metrics(metrics: pd.DataFrame) -> pd.DataFrame:
    """The shape of sweep.parquet rebuilt from metrics.parquet: one row per guidance, one column per metric."""
    rows = metrics[(metrics["subset"] == C.ALL_SUBSET) & metrics["guidance"].notna()]
    if rows.empty:
        return pd.DataFrame({"guidance": pd.Series(dtype=float)})
    table = rows.pivot_table(index="guidance", columns="metric", values="value", aggfunc="first", sort=True)
    table = table.reindex(columns=list(dict.fromkeys(rows["metric"]))).reset_index()
    table.columns.name = None
    return table


def metric_columns(table: pd.DataFrame) -> list[str]:
    """The metric columns of a sweep table: numeric columns that are not the sweep's own (guidance, formulation)
    nor a metric's interval bound (``<metric>_ci_low`` / ``_ci_high``)."""
    return [str(c) for c in table.columns
            if c not in C.SWEEP_TABLE.columns and pd.api.types.is_numeric_dtype(table[c])
            and not str(c).endswith(C.INTERVAL_SUFFIXES)]  # fmt: skip


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
