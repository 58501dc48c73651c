"""The "Metrics" page: a run's scores from ``t2i-bench score`` / ``t2i-bench sweep``.

Shows a headline table (metric × guidance, subset "all"), per-category tables
for the metrics that have them, and the guidance trade-off curve of the GLIDE /
Imagen / Stable Diffusion papers (FD against CLIP score, one point per
guidance scale) as an interactive plotly chart.

Metric metadata (display name, higher-is-better, paper) comes from
``bench.metrics.metric_info``, imported lazily on first use: that package is
numpy/scipy only and never loads torch (tests check this).  Tables go through
``st.dataframe``, which draws cell text literally (no Markdown); every piece of
run-derived text shown as Markdown (titles, captions, errors) is passed through
``escape_markdown``, and labels drawn by plotly through ``html.escape``.
"""

from __future__ import annotations

import html
import shlex
from functools import lru_cache
from pathlib import Path
from typing import Any

import pandas as pd
import streamlit as st

from bench import contract as C
from dashboard.data import metrics as M
from dashboard.data.discovery import RunInfo
from dashboard.data.text import MISSING, escape_markdown
from dashboard.views.common import choose_run, runs_in_sidebar

SCORE_HINT = "--reference REF_RUN_OR_STATS.npz --features efficientnet-lite0"


@lru_cache(maxsize=256)
def describe_metric(name: str) -> tuple[str, bool | None]:
    """``(display name, higher_is_better)`` for a reported metric name; ``(name, None)`` if unknown.

    Metrics named after their extractor (``bench.contract`` naming rule) keep
    it: ``"FD_efficientnet-lite0"`` shows as ``"FD (efficientnet-lite0)"``, not
    "FID", and ``"precision_inception-v3-pool3"`` as ``"Precision (inception-v3-pool3)"``;
    "FID" and "KID" are Inception's by name.
    """
    info = _metric_info(name)
    if info is None:
        return name, None
    base, extractor = C.parse_metric_name(name)
    if name == "FD":  # FD on features without a key: not Inception's FID
        display = "FD"
    elif name in ("FID", "KID") or extractor is None:
        display = info.display_name
    elif base in ("FD", "KID"):
        display = f"{base} ({extractor})"
    else:
        display = f"{info.display_name} ({extractor})"
    return display, bool(info.higher_is_better)


def _metric_info(name: str) -> Any:
    """``bench.metrics.metric_info(name)`` or None (unknown metric, or bench unavailable)."""
    try:
        from bench.metrics import metric_info  # numpy/scipy only: no torch
    except Exception:  # an installation without bench, or a broken one: names only
        return None
    try:
        return metric_info(name)
    except KeyError:
        return None


def metric_notes(names: list[str]) -> pd.DataFrame:
    """One row per metric: display name, direction, definition and paper (for the "About" expander)."""
    rows = []
    for name in names:
        info = _metric_info(name)
        display, higher = describe_metric(name)
        rows.append(
            {
                "metric": M.metric_label(display, None, higher),
                "reported as": name,
                "better": "—" if higher is None else ("higher" if higher else "lower"),
                "definition": getattr(info, "formula", ""),
                "paper": getattr(info, "paper", ""),
                "link": getattr(info, "url", ""),
            }
        )
    return pd.DataFrame(rows)


def score_command(run_dir: Path) -> str:
    """The command that scores ``run_dir`` (shown when a run has no metrics yet)."""
    return f"t2i-bench score {shlex.quote(str(run_dir))} {SCORE_HINT}"


def axis_title(name: str) -> str:
    """Axis title for a metric, e.g. ``"CLIP score (higher is better)"``."""
    display, higher = describe_metric(name)
    if higher is None:
        return display
    return f"{display} ({'higher' if higher else 'lower'} is better)"


def _hover_name(name: str) -> str:
    return html.escape(describe_metric(name)[0]).replace("%", "%%")


def _error(points: pd.DataFrame, axis: str) -> dict | None:
    """Plotly error bars of an axis of ``tradeoff_points`` from its 95% interval, or None without one."""
    if f"{axis}_low" not in points.columns:
        return None
    bars = M.error_bars(points[axis], points[f"{axis}_low"], points[f"{axis}_high"])
    if bars is None:
        return None
    return {"type": "data", "symmetric": False, "array": bars[0], "arrayminus": bars[1], "thickness": 1.2,
            "width": 4}  # fmt: skip


def tradeoff_figure(points: pd.DataFrame, x: str, y: str, title: str | None = None):
    """The trade-off curve: one labelled point per guidance scale, joined in guidance order, with each
    axis's 95% interval as error bars where the table has one."""
    import plotly.graph_objects as go  # only this page needs plotly

    x_title, y_title = html.escape(axis_title(x)), html.escape(axis_title(y))
    figure = go.Figure(
        go.Scatter(
            x=points["x"].tolist(),
            y=points["y"].tolist(),
            error_x=_error(points, "x"),
            error_y=_error(points, "y"),
            mode="lines+markers+text",
            text=points["label"],
            textposition="top center",
            customdata=points["guidance"].tolist(),
            marker={"size": 10},
            line={"width": 2},
            hovertemplate=(
                "guidance %{customdata:g}<br>"
                + _hover_name(x)
                + " %{x:.4g}<br>"
                + _hover_name(y)
                + " %{y:.4g}<extra></extra>"
            ),
            name="guidance sweep",
        )
    )
    figure.update_layout(
        title=html.escape(title) if title else None,
        xaxis_title=x_title,
        yaxis_title=y_title,
        height=460,
        margin={"l": 60, "r": 30, "t": 50 if title else 20, "b": 50},
        showlegend=False,
    )
    return figure


def guidance_figure(curves: list[tuple[str, pd.DataFrame]], metric: str,
                    marked: list[tuple[str, float]] | None = None):
    """``metric`` against the guidance scale, one line per ``(name, M.guidance_curve(...))`` with its 95%
    interval as error bars; each ``(name, guidance)`` of ``marked`` is drawn as a larger hollow marker."""
    import plotly.graph_objects as go

    figure = go.Figure()
    for name, curve in curves:
        bars = M.error_bars(curve["value"], curve["low"], curve["high"])
        figure.add_trace(go.Scatter(
            x=curve["guidance"].tolist(), y=curve["value"].tolist(), mode="lines+markers", name=html.escape(name),
            error_y=None if bars is None else {"type": "data", "symmetric": False, "array": bars[0],
                                               "arrayminus": bars[1], "thickness": 1.2, "width": 5},
            customdata=list(zip(curve["low"], curve["high"])), marker={"size": 9},
            hovertemplate=(html.escape(name).replace("%", "%%") + "<br>guidance %{x:g}<br>" + _hover_name(metric)
                           + " %{y:.4g}<br>95%% interval [%{customdata[0]:.4g}, %{customdata[1]:.4g}]<extra></extra>"),
        ))  # fmt: skip
    for name, guidance in marked or []:
        curve = dict(curves).get(name)
        if curve is None:
            continue
        at = curve[curve["guidance"] == guidance]
        if not at.empty:
            figure.add_trace(go.Scatter(x=at["guidance"].tolist(), y=at["value"].tolist(), mode="markers",
                                        showlegend=False,
                                        marker={"size": 18, "symbol": "circle-open", "line": {"width": 2}},
                                        hoverinfo="skip", name=html.escape(f"{name} (picked)")))  # fmt: skip
    figure.update_layout(
        xaxis_title="guidance scale", yaxis_title=html.escape(axis_title(metric)), height=420,
        margin={"l": 60, "r": 30, "t": 20, "b": 50}, showlegend=len(curves) > 1,
        legend={"orientation": "h", "yanchor": "bottom", "y": 1.02, "x": 0},
    )  # fmt: skip
    return figure


def _styled(table: pd.DataFrame):
    """Numbers with 4 significant digits, missing cells as a dash."""
    return table.style.format("{:.4g}", na_rep=MISSING)


#: How the detail tables' numeric columns are shown.
_DETAIL_FORMATS = {"value": "{:.4g}", "95% low": "{:.4g}", "95% high": "{:.4g}", "std": "{:.3g}",
                   "N for ±1%": "{:,.0f}", "n": "{:.0f}", "n_ref": "{:.0f}"}  # fmt: skip
_DETAIL_HELP = {
    "95% low": "lower end of the value's 95% interval (the method is named below the table)",
    "95% high": "upper end of the value's 95% interval",
    "N for ±1%": "the number of images at which the 95% interval would be ±1% of the value (half-width ∝ 1/√N)",
    "n": "images scored", "n_ref": "reference images (two-sample metrics)",
    "reference": "the reference run or statistics file", "std": "KID: standard deviation over its subsets",
    "flag": "an interval the scorer marked unreliable (FD with N ≤ d: resamples are biased upward)",
}  # fmt: skip


def styled_details(table: pd.DataFrame):
    """A detail table (``metrics.headline_details`` / ``category_details``) with its number formats."""
    formats = {column: spec for column, spec in _DETAIL_FORMATS.items() if column in table.columns}
    return table.style.format(na_rep=MISSING).format(formats, na_rep=MISSING)


def _rows_height(table: pd.DataFrame, limit: int = 24) -> int:
    """A table height (px) that shows up to ``limit`` rows without scrolling."""
    return 38 + 35 * min(len(table), limit)


def _detail_config(table: pd.DataFrame) -> dict:
    return {column: st.column_config.Column(column, help=text) for column, text in _DETAIL_HELP.items()
            if column in table.columns}  # fmt: skip


def render(root: Path) -> None:
    """Draw the Metrics page for the runs under ``root``."""
    runs = runs_in_sidebar(root)
    if not runs:
        st.title("Metrics")
        st.info(f"No runs found in {escape_markdown(root)}; make one (see the Runs page), score it, then reload.")
        return

    run = choose_run(runs)
    st.title(f"Metrics · {escape_markdown(run.name)}")

    metrics, error = M.load_metrics(run.path)
    if metrics is None:
        if C.METRICS_TABLE.path(run.path).is_file():
            st.error(f"The metrics of this run cannot be shown: {escape_markdown(error)}")
            st.markdown("Score the run again to rewrite them:")
        else:
            st.info("No metrics yet for this run. Score it, then reload this page:")
        st.code(score_command(run.path), language="bash")
        st.caption("`--clip builtin` adds CLIP score and CMMD; shapes prompt sets also get compositional accuracy.")
        return
    if metrics.empty:
        st.info(f"{C.METRICS} holds no rows.")
        return

    _render_headline(metrics)
    _render_categories(metrics)
    _render_tradeoff(run, metrics)

    names = list(dict.fromkeys(metrics["metric"]))
    with st.expander("About these metrics"):
        st.dataframe(
            metric_notes(names),
            hide_index=True,
            column_config={"link": st.column_config.LinkColumn("link")},
        )


def _render_headline(metrics: pd.DataFrame) -> None:
    st.subheader("Headline")
    table = M.headline_details(metrics, describe_metric)
    if table.empty:
        st.info("No headline rows (subset 'all') in metrics.parquet.")
        return
    st.caption(
        "All images of the run, one row per metric and guidance: **all** pools every guidance scale, **g=…** is "
        "one scale. ↑ higher is better, ↓ lower is better. **95% low/high**: the value's 95% interval; "
        "**N for ±1%**: the images needed for an interval of ±1% of the value; **n** images scored, "
        "**n\\_ref** reference images."
    )
    if (table["flag"] == "").all():
        table = table.drop(columns="flag")
    st.dataframe(styled_details(table), key="headline", hide_index=True, column_config=_detail_config(table),
                 height=_rows_height(table))  # fmt: skip
    _render_interval_notes(metrics, table)


def _render_interval_notes(metrics: pd.DataFrame, table: pd.DataFrame) -> None:
    """The intervals' methods (a caption) and a warning for the values flagged unreliable."""
    methods = M.interval_methods(metrics)
    if methods:
        lines = [f"{escape_markdown(method)} ({escape_markdown(', '.join(describe_metric(n)[0] for n in names))})"
                 for method, names in methods]  # fmt: skip
        st.caption("95% intervals: " + "; ".join(lines) + ".")
    else:
        st.caption("No intervals in this run's metrics.parquet (score with --bootstrap N to get them).")
    flagged = table.loc[table["flag"] != "", "metric"].unique().tolist() if "flag" in table else []
    if flagged:
        st.warning(f"{escape_markdown(M.UNRELIABLE_FLAG)}: {escape_markdown(', '.join(flagged))}. With no more "
                   "images than feature dimensions the covariance is singular; score more images for a "
                   "trustworthy value and interval.", icon=":material/warning:")  # fmt: skip


def _render_categories(metrics: pd.DataFrame) -> None:
    names = M.category_metrics(metrics)
    if not names:
        return
    st.subheader("Per category")
    columns = st.columns(min(len(names), 2))
    for i, name in enumerate(names):
        with columns[i % len(columns)]:
            st.markdown(f"**{escape_markdown(M.metric_label(name, *describe_metric(name)))}**")
            table = M.category_details(metrics, name)
            if (table["flag"] == "").all():
                table = table.drop(columns="flag")
            st.dataframe(styled_details(table), hide_index=True, key=f"category-{i}",
                         column_config=_detail_config(table))  # fmt: skip


def _render_tradeoff(run: RunInfo, metrics: pd.DataFrame) -> None:
    st.subheader("Guidance trade-off")
    sweep, sweep_error = M.load_sweep(run.path)
    if sweep is not None:
        table, source = sweep, C.SWEEP
    else:
        if C.SWEEP_TABLE.path(run.path).is_file():
            st.warning(f"Ignoring {C.SWEEP}: {escape_markdown(sweep_error)}")
        table, source = M.sweep_from_metrics(metrics), C.METRICS

    _, reason = M.tradeoff_points(table)
    if reason:
        st.info(f"No trade-off curve for this run: {escape_markdown(reason)}.")
        return

    options = M.metric_columns(table)
    left, right = st.columns(2)
    x = left.selectbox(
        "x axis", options, index=options.index(M.alignment_column(table)),
        format_func=lambda c: describe_metric(c)[0], key=f"tradeoff-x::{run.name}",
    )  # fmt: skip
    y = right.selectbox(
        "y axis", options, index=options.index(M.fidelity_column(table)),
        format_func=lambda c: describe_metric(c)[0], key=f"tradeoff-y::{run.name}",
    )  # fmt: skip
    points, reason = M.tradeoff_points(table, x, y)
    if points is None:
        st.info(f"No curve for these axes: {escape_markdown(reason)}.")
        return
    st.plotly_chart(tradeoff_figure(points, x, y), key="tradeoff")
    bars = "x_low" in points.columns
    st.caption(
        f"One point per guidance scale (g), joined in increasing guidance; from {source}. "
        + ("Bars: the 95% interval of each value. " if bars else "No intervals in this table (score with "
           "--bootstrap N to get error bars). ")
        + "Raising guidance usually buys text alignment at the cost of fidelity and diversity "
        "(GLIDE, Imagen and Stable Diffusion papers)."
    )
    metric = st.selectbox(
        "Against guidance", options, index=options.index(x), format_func=lambda c: describe_metric(c)[0],
        key=f"guidance-metric::{run.name}",
    )  # fmt: skip
    curve = M.guidance_curve(table, metric)
    st.plotly_chart(guidance_figure([(run.name, curve)], metric), key="against-guidance")
    plot = run.path / C.SWEEP_PLOT
    if plot.is_file():
        with st.expander(f"Static plot ({C.SWEEP_PLOT} from t2i-bench sweep)"):
            try:
                st.image(str(plot))
            except Exception as exc:  # a damaged file must not take the page down
                st.error(f"Cannot show {C.SWEEP_PLOT}: {escape_markdown(exc)}")
