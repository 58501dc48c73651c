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
    """The shape of sweep.parquet rebuilt from metrics.parquet: one row per guidance, one column per metric,
    then each metric's 95% interval as ``<metric>_ci_low`` / ``<metric>_ci_high`` where the rows have one."""
    rows = metrics[(metrics["subset"] == C.ALL_SUBSET) & metrics["guidance"].notna()]
    if rows.empty:
        return pd.DataFrame({"guidance": pd.Series(dtype=float)})
    names = list(dict.fromkeys(rows["metric"]))
    table = rows.pivot_table(index="guidance", columns="metric", values="value", aggfunc="first", sort=True)
    table = table.reindex(columns=names)
    for column, suffix in zip(("ci_low", "ci_high"), C.INTERVAL_SUFFIXES):
        if column not in rows.columns or rows[column].isna().all():
            continue
        bound = rows.pivot_table(index="guidance", columns="metric", values=column, aggfunc="first", dropna=False)
        table = table.join(bound.reindex(index=table.index, columns=names).add_suffix(suffix))
    table = table.reset_index()
    table.columns.name = None
    return table


def metric_columns(table: pd.DataFrame) -> list[str]:
    """The metric columns of a sweep table, the axes a curve may use: numeric columns with at least one value
    that are not the sweep's own (guidance, its text formulation) nor a metric's interval bound
    (``<metric>_ci_low`` / ``_ci_high``)."""
    return [str(c) for c in table.columns
            if c not in C.SWEEP_TABLE.columns and pd.api.types.is_numeric_dtype(table[c])
            and not pd.api.types.is_bool_dtype(table[c]) and table[c].notna().any()
            and not str(c).endswith(C.INTERVAL_SUFFIXES)]  # fmt: skip


def interval_columns(table: pd.DataFrame, column: str) -> tuple[str, str] | None:
    """``(<column>_ci_low, <column>_ci_high)`` when the sweep table has both, else None."""
    low, high = (f"{column}{suffix}" for suffix in C.INTERVAL_SUFFIXES)
    return (low, high) if low in table.columns and high in table.columns else None


def fidelity_column(table: pd.DataFrame) -> str | None:
    """The FD/FID column of a sweep table (FID preferred), or None."""
    columns = [str(c) for c in table.columns]
    return next((c for c in columns if c == "FID"), None) or next(
        (c for c in columns if c == "FD" or c.startswith("FD_")), None
    )


def alignment_column(table: pd.DataFrame) -> str | None:
    """The text-alignment column of a sweep table (CLIP score, else compositional accuracy), or None."""
    return next((c for c in ALIGNMENT_METRICS if c in table.columns), None)


def _axis_problem(table: pd.DataFrame, column: str) -> str | None:
    """Why ``column`` cannot be a curve's axis (not in the table, not numeric, no value), or None."""
    if column not in table.columns:
        return f"{column} is not in the table"
    if not pd.api.types.is_numeric_dtype(table[column]) or pd.api.types.is_bool_dtype(table[column]):
        return f"{column} is not a numeric column"
    if table[column].notna().sum() == 0:
        return f"{column} has no value at any guidance scale"
    return None


def tradeoff_points(
    table: pd.DataFrame, x: str | None = None, y: str | None = None
) -> tuple[pd.DataFrame | None, str | None]:
    """Points of the guidance trade-off curve: columns ``guidance, x, y, label``, in guidance order, and
    ``x_low, x_high, y_low, y_high`` (the axes' 95% intervals; NaN for an axis without) when the table has
    an interval for either axis.

    ``x`` defaults to the alignment metric and ``y`` to FD/FID.  Returns
    ``(None, reason)`` when the curve cannot be drawn (a missing or non-numeric
    axis, or fewer than two guidance scales with both values).
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
    for axis in (x, y):
        problem = _axis_problem(table, axis)
        if problem:
            return None, problem
    data = {
        "guidance": pd.to_numeric(table["guidance"], errors="coerce").astype(float),
        "x": table[x].astype(float),
        "y": table[y].astype(float),
    }
    points = pd.DataFrame(data).dropna()
    if interval_columns(table, x) or interval_columns(table, y):
        for axis, column in (("x", x), ("y", y)):
            bounds = interval_columns(table, column)
            for side, bound in zip(("low", "high"), bounds or (None, None)):
                points[f"{axis}_{side}"] = (pd.to_numeric(table.loc[points.index, bound], errors="coerce")
                                            .astype(float) if bound else float("nan"))  # fmt: skip
    points = points.sort_values("guidance", kind="stable").reset_index(drop=True)
    if len(points) < 2:
        return None, f"the curve needs at least two guidance scales with values of both {x} and {y}"
    points["label"] = [guidance_label(g) for g in points["guidance"]]
    return points, None


def guidance_curve(table: pd.DataFrame, metric: str) -> pd.DataFrame:
    """One metric against guidance from a sweep table: columns ``guidance, value, low, high`` (NaN bounds where
    the table has no interval), rows with a value, in guidance order."""
    if metric not in table.columns or "guidance" not in table.columns:
        return pd.DataFrame({c: pd.Series(dtype=float) for c in ("guidance", "value", "low", "high")})
    bounds = interval_columns(table, metric)
    curve = pd.DataFrame({
        "guidance": pd.to_numeric(table["guidance"], errors="coerce").astype(float),
        "value": pd.to_numeric(table[metric], errors="coerce").astype(float),
        "low": table[bounds[0]].astype(float) if bounds else float("nan"),
        "high": table[bounds[1]].astype(float) if bounds else float("nan"),
    })  # fmt: skip
    curve = curve.dropna(subset=["guidance", "value"])
    return curve.sort_values("guidance", kind="stable").reset_index(drop=True)


def error_bars(values: Iterable[float], low: Iterable[float], high: Iterable[float]) -> tuple[list, list] | None:
    """Plotly's asymmetric error bars ``(array, arrayminus)`` from interval bounds; None when there is no bound.

    A missing bound is a bar of 0 on that side; a bound on the wrong side of the value (an FD interval with
    N <= d can lie above it) is kept as 0 rather than drawn backwards.
    """
    values, low, high = (pd.Series(list(v), dtype=float) for v in (values, low, high))
    if low.isna().all() and high.isna().all():
        return None
    plus = (high - values).clip(lower=0).fillna(0.0)
    minus = (values - low).clip(lower=0).fillna(0.0)
    return plus.tolist(), minus.tolist()


# --------------------------------------------------------------- the tables with intervals and sample sizes

#: A value's interval is flagged when its ``ci_method`` says so (FD with N <= d: ``bench.metrics.fid``).
UNRELIABLE_FLAG = "N ≤ d: interval unreliable"


def _flag(method: Any) -> str:
    return UNRELIABLE_FLAG if isinstance(method, str) and "unreliable" in method else ""


def _detail_rows(rows: pd.DataFrame) -> pd.DataFrame:
    """The shared columns of the detail tables: value, its interval, N for ±1%, n, the flag."""
    return pd.DataFrame({
        "guidance": [guidance_label(g) for g in rows["guidance"]],
        "value": rows["value"].astype(float).to_numpy(),
        "95% low": rows["ci_low"].astype(float).to_numpy() if "ci_low" in rows else float("nan"),
        "95% high": rows["ci_high"].astype(float).to_numpy() if "ci_high" in rows else float("nan"),
        "N for ±1%": rows["n_for_1pct"].astype(float).to_numpy() if "n_for_1pct" in rows else float("nan"),
        "n": rows["n"].astype(float).to_numpy() if "n" in rows else float("nan"),
    })  # fmt: skip


def _guidance_sort(rows: pd.DataFrame) -> pd.DataFrame:
    """Rows with "all" (NaN guidance) first, then the scales in increasing order (stable otherwise)."""
    key = rows["guidance"].astype(float).fillna(float("-inf"))
    return rows.assign(_g=key).sort_values("_g", kind="stable").drop(columns="_g")


def headline_details(metrics: pd.DataFrame, describe=_plain) -> pd.DataFrame:
    """One row per (metric, guidance) of the ``subset == "all"`` rows, with what each number rests on.

    Columns: ``metric`` (``metric_label``), ``guidance`` ("all", "g=…"), ``value``, ``95% low``,
    ``95% high`` (its interval; NaN: none), ``flag`` (``UNRELIABLE_FLAG`` where the interval's method says
    so), ``N for ±1%``, ``n``, ``n_ref`` (reference images; NaN for one-sample metrics), ``reference`` and
    ``std`` (KID's subset std; only when a row has one).  Metrics keep their order of appearance.
    """
    rows = metrics[metrics["subset"] == C.ALL_SUBSET]
    if rows.empty:
        return pd.DataFrame()
    order = {name: i for i, name in enumerate(dict.fromkeys(rows["metric"]))}
    rows = _guidance_sort(rows)
    rows = rows.assign(_m=rows["metric"].map(order)).sort_values("_m", kind="stable").drop(columns="_m")
    table = _detail_rows(rows)
    table.insert(0, "metric", [metric_label(n, *describe(n)) for n in rows["metric"]])
    table.insert(table.columns.get_loc("95% high") + 1, "flag",
                 [_flag(m) for m in rows["ci_method"]] if "ci_method" in rows else "")
    table["n_ref"] = rows["n_ref"].astype(float).to_numpy() if "n_ref" in rows else float("nan")
    table["reference"] = [r if isinstance(r, str) else "" for r in rows["reference"]] if "reference" in rows else ""
    if "std" in rows.columns and pd.to_numeric(rows["std"], errors="coerce").notna().any():
        table["std"] = pd.to_numeric(rows["std"], errors="coerce").astype(float).to_numpy()
    return table.reset_index(drop=True)


def category_details(metrics: pd.DataFrame, metric: str) -> pd.DataFrame:
    """One row per (category, guidance) of one metric's per-category rows (categories sorted): ``category``,
    then the columns of ``headline_details`` that a category row has (value, interval, N for ±1%, n, flag)."""
    rows = metrics[(metrics["metric"] == metric) & metrics["subset"].str.startswith(C.CATEGORY_PREFIX)]
    if rows.empty:
        return pd.DataFrame()
    rows = _guidance_sort(rows.assign(category=rows["subset"].str.slice(len(C.CATEGORY_PREFIX))))
    rows = rows.sort_values("category", kind="stable")
    table = _detail_rows(rows)
    table.insert(0, "category", rows["category"].to_numpy())
    table["flag"] = [_flag(m) for m in rows["ci_method"]] if "ci_method" in rows else ""
    return table.reset_index(drop=True)


def interval_methods(metrics: pd.DataFrame) -> list[tuple[str, list[str]]]:
    """``(ci_method, [metric, ...])`` for every distinct non-empty interval method, in order of appearance."""
    if "ci_method" not in metrics.columns:
        return []
    out: dict[str, list[str]] = {}
    for name, method in zip(metrics["metric"], metrics["ci_method"]):
        if isinstance(method, str) and method:
            names = out.setdefault(method, [])
            if name not in names:
                names.append(name)
    return list(out.items())
