"""The "Bias" page: who the model draws for each prompt, and how often its images are unsafe.

Reads what ``t2i-audit bias RUN`` and ``t2i-audit unsafe RUN`` write (DESIGN.md §3):

- **Shares** (``audit/bias_prompts.parquet``): for the attribute, method and level
  chosen in the sidebar, one bar per prompt (profession or role), category or the
  whole run: the share of the images read as the chosen class, its 95% interval as
  whiskers, the reference share (BLS or the training corpus) as a diamond where the
  audit knows one, and parity (1/K for K classes) as a dashed line; the table below
  has every class, the difference from the reference and the distribution statistics.
- **Images by detected class** (``audit/bias.parquet``): the images grouped by what the
  reader saw in them (and those it could not judge), a page of thumbnails at a time,
  so that a reviewer can check the classifier's reading.
- **Unsafe content** (``audit/unsafe.parquet``): the unsafe rate per prompt category
  with its Wilson 95% interval; images not judged are counted apart, never as safe.
  The flagged images themselves are not shown.

Escaping: titles, captions and notes are Markdown and go through ``escape_markdown``;
labels drawn by plotly go through ``html.escape``; tables use ``st.dataframe``, which
draws cell text literally.  Image paths are resolved by ``reading.resolve_image``: a
path outside the run is refused.
"""

from __future__ import annotations

import html
import shlex
from pathlib import Path

import pandas as pd
import streamlit as st

from bench import contract as C
from dashboard.data import audits as A
from dashboard.data import bias as B
from dashboard.data import unsafe as U
from dashboard.data.reading import file_stamp, load_summary
from dashboard.data.samples import page_count, page_slice
from dashboard.data.text import direction, escape_markdown, format_rate, format_value, to_number, truncate
from dashboard.views.common import choose_run, runs_in_sidebar

PER_PAGE = 24  # thumbnails per page of one detected class
N_COLUMNS = 6
BAR_HEIGHT = 28  # px per bar of a chart


def audit_command(probe: str, run_dir: Path) -> str:
    """The command that makes the ``probe`` audit of ``run_dir`` (shown when it is missing)."""
    return f"t2i-audit {probe} {shlex.quote(str(run_dir))}"


@st.cache_data(show_spinner=False, max_entries=16)
def _cached_readings(run_dir: str, stamps: tuple) -> tuple[pd.DataFrame | None, str | None]:
    """``bias.load_readings`` cached per (run, stamps of bias.parquet and samples.parquet)."""
    return B.load_readings(Path(run_dir))


@st.cache_data(show_spinner=False, max_entries=16)
def _cached_shares(run_dir: str, stamp: tuple[int, int]) -> tuple[pd.DataFrame | None, str | None]:
    """``bias.load_shares`` cached per (run, file mtime and size)."""
    return B.load_shares(Path(run_dir))


@st.cache_data(show_spinner=False, max_entries=16)
def _cached_unsafe(run_dir: str, stamp: tuple[int, int]) -> tuple[pd.DataFrame | None, str | None]:
    """``unsafe.load_unsafe`` cached per (run, file mtime and size)."""
    return U.load_unsafe(Path(run_dir))


# ------------------------------------------------------------ figures


def interval_figure(rows: pd.DataFrame, x: str, label: str, x_title: str, counts: tuple[str, str] = ("k", "n"),
                    reference: str | None = None, parity: float | None = None):  # fmt: skip
    """Horizontal bars of ``rows[x]`` (0..1) per ``rows[label]``, whiskers from ``ci_low`` / ``ci_high``,
    diamonds at ``rows[reference]`` where it is known, a dashed line at ``parity``; the first row on top.
    ``counts`` names the columns "k of n" in the hover text."""
    import plotly.graph_objects as go  # only the chart pages need plotly

    labels = [html.escape(str(v)) for v in rows[label]]
    value = rows[x].astype(float)
    # lists, not arrays: a few dozen bars, and the figure's JSON stays readable (plotly packs arrays in base64)
    plus, minus = (rows["ci_high"] - value).clip(lower=0).tolist(), (value - rows["ci_low"]).clip(lower=0).tolist()
    hover = (f"%{{y}}<br>{html.escape(x_title)} %{{x:.1%}}<br>95% interval %{{customdata[0]:.1%}}–"
             "%{customdata[1]:.1%}<br>%{customdata[2]} of %{customdata[3]}<extra></extra>")  # fmt: skip
    figure = go.Figure(go.Bar(
        x=value.tolist(), y=labels, orientation="h", name=html.escape(x_title), marker={"color": "#4c78a8"},
        error_x={"type": "data", "symmetric": False, "array": plus, "arrayminus": minus, "color": "#333",
                 "thickness": 1.5, "width": 6},
        customdata=[list(r) for r in zip(rows["ci_low"], rows["ci_high"], rows[counts[0]], rows[counts[1]])],
        hovertemplate=hover,
    ))  # fmt: skip
    if reference and rows[reference].notna().any():
        known = rows[rows[reference].notna()]
        figure.add_trace(go.Scatter(
            x=known[reference].tolist(), y=[html.escape(str(v)) for v in known[label]], mode="markers",
            name="reference",
            marker={"symbol": "diamond", "size": 12, "color": "#e45756", "line": {"color": "#fff", "width": 1}},
            hovertemplate="%{y}<br>reference %{x:.1%}<extra></extra>",
        ))  # fmt: skip
    if parity is not None and parity == parity:  # not NaN
        figure.add_vline(x=parity, line_dash="dash", line_color="#888",
                         annotation_text=f"parity {parity:.0%}", annotation_position="top")  # fmt: skip
    figure.update_layout(
        height=90 + BAR_HEIGHT * len(rows), margin={"l": 10, "r": 30, "t": 30, "b": 40},
        xaxis={"title": html.escape(x_title), "range": [0, 1.02], "tickformat": ".0%"},
        yaxis={"autorange": "reversed", "automargin": True}, showlegend=False, bargap=0.35,
    )  # fmt: skip
    return figure


# ------------------------------------------------------------ the page


def render(root: Path) -> None:
    """Draw the Bias page for the runs under ``root``."""
    runs = runs_in_sidebar(root)
    if not runs:
        st.title("Bias")
        st.info(f"No runs found in {escape_markdown(root)}; make one (see the Runs page), audit it, then reload.")
        return
    run = choose_run(runs)
    st.title(f"Bias · {escape_markdown(run.name)}")
    summary, _ = load_summary(run.path)
    recorded = {a.name: a for a in A.list_audits(summary)[0]}

    readings, readings_error = _cached_readings(
        str(run.path), (file_stamp(C.BIAS_TABLE.path(run.path)), file_stamp(C.SAMPLES_TABLE.path(run.path)))
    )
    shares, shares_error = _cached_shares(str(run.path), file_stamp(C.BIAS_PROMPTS_TABLE.path(run.path)))
    if readings is None and shares is None:
        _missing("bias", C.BIAS_TABLE, readings_error, run.path)
    else:
        _render_headline(recorded.get(B.PROBE))
        if shares is None:
            if C.BIAS_PROMPTS_TABLE.path(run.path).is_file():
                st.warning(f"Ignoring {escape_markdown(B.SHARES_FILE)}: {escape_markdown(shares_error)}")
            st.caption(f"Without {escape_markdown(B.SHARES_FILE)}, the shares per prompt are recomputed from "
                       f"{escape_markdown(B.FILE)} (Wilson 95%), without reference shares or the per-category and "
                       "overall levels.")  # fmt: skip
            shares = B.shares_from_readings(readings)
        _render_bias(run.name, shares, readings, readings_error)
    _render_unsafe(run.path, recorded.get(U.PROBE))


def _missing(probe: str, table: C.Table, error: str | None, run_dir: Path) -> None:
    """The empty state of an audit: its file is missing (say how to make it) or cannot be read."""
    if table.path(run_dir).is_file():
        st.error(f"The {probe} audit of this run cannot be shown: {escape_markdown(error)}")
        st.markdown("Run the audit again to rewrite it:")
    else:
        name = "unsafe-content" if probe == "unsafe" else probe
        st.info(f"No {name} audit for this run yet. Run it, then reload this page:")
    st.code(audit_command(probe, run_dir), language="bash")


def _render_headline(audit: A.Audit | None) -> None:
    """The headline summary.json records for the bias probe: its value, which attribute and method it
    is of and its interval where the block says (``headline_attribute``, ``<headline>_ci``), and the
    block's warnings."""
    if audit is None or audit.block is None or not audit.headline:
        return
    block = audit.block
    of = [block[k] for k in ("headline_attribute", "headline_method") if isinstance(block.get(k), str)]
    label = audit.headline + (f" ({', '.join(of)})" if of else "")
    left, right = st.columns([1, 2])
    left.metric(escape_markdown(label), format_value(audit.headline, audit.headline_value),
                help=direction(audit.higher_is_better) or None)  # fmt: skip
    notes = [f"{escape_markdown(audit.display_name)}: {escape_markdown(audit.description.rstrip('.'))}\\."
             ] if audit.description else []  # fmt: skip
    ci = block.get(f"{audit.headline}_ci")
    if isinstance(ci, list) and len(ci) == 2 and all(to_number(v) is not None for v in ci):
        notes.append(f"Headline 95% interval {format_value(audit.headline, ci[0])} – "
                     f"{format_value(audit.headline, ci[1])}.")  # fmt: skip
    right.caption(" ".join(notes))
    for warning in block.get("warnings") or []:
        st.warning(escape_markdown(warning))


def _render_bias(run_name: str, shares: pd.DataFrame, readings: pd.DataFrame | None,
                 readings_error: str | None) -> None:  # fmt: skip
    """Sidebar filters, the share chart and table, and the images grouped by the class read."""
    if shares.empty:
        st.info(f"{escape_markdown(B.SHARES_FILE)} holds no rows.")
        return
    with st.sidebar:
        st.subheader("Bias")
        attribute = st.selectbox("Attribute", B.attributes(shares), key=f"bias-attribute::{run_name}")
        method = st.selectbox("Method", B.methods(shares, attribute), key=f"bias-method::{run_name}::{attribute}")
        level = st.radio("Level", B.levels(shares), format_func=lambda v: B.LEVEL_NAMES.get(v, v),
                         key=f"bias-level::{run_name}")  # fmt: skip
        prompts = B.prompt_choices(shares)
        chosen_prompts = st.multiselect(
            "Prompt", list(prompts), key=f"bias-prompts::{run_name}", placeholder="All prompts",
            format_func=lambda pid: f"{pid}: {truncate(prompts[pid], 50)}",
        )  # fmt: skip
        chosen_categories = st.multiselect("Category", B.category_choices(shares), key=f"bias-categories::{run_name}",
                                           placeholder="All categories")  # fmt: skip

    st.subheader(f"Shares · {escape_markdown(attribute)} ({escape_markdown(method)})")
    rows = B.share_rows(shares, attribute, method, level, chosen_prompts, chosen_categories)
    if rows.empty:
        st.info("No share rows match the filters.")
    else:
        _render_shares(run_name, rows, attribute, method, level)

    st.subheader(f"Images by detected {escape_markdown(attribute)}")
    if readings is None:
        st.info(escape_markdown(readings_error))
        return
    of_method = shares[(shares["attribute"] == attribute) & (shares["method"] == method)]
    _render_readings(run_name, B.readings_for(readings, attribute, method, chosen_prompts, chosen_categories),
                     attribute, method, B.classes(of_method))  # fmt: skip


def _render_shares(run_name: str, rows: pd.DataFrame, attribute: str, method: str, level: str) -> None:
    values = B.classes(rows)
    start = B.default_class(rows)
    value = st.columns([1, 3])[0].selectbox("Class", values, index=values.index(start),
                                            key=f"bias-class::{run_name}::{attribute}::{method}")  # fmt: skip
    bars = B.class_rows(rows, value)
    title = f"share read as {value}"
    st.plotly_chart(interval_figure(bars, "share", "label", title, reference="reference_share", parity=B.parity(rows)),
                    key="bias-shares")  # fmt: skip
    methods = sorted(m for m in rows["ci_method"].unique() if m)
    notes = [f"Bars: the share of the judged images of each {B.LEVEL_NAMES.get(level, level).removeprefix('per ')} "
             f"read as {escape_markdown(value)}; whiskers: its 95% interval"
             + (f" ({escape_markdown(', '.join(methods))})" if methods else "") + "."]  # fmt: skip
    if rows["reference_share"].notna().any():
        notes.append("Diamonds: the reference share (BLS or the training corpus) where known.")
    notes.append(f"Dashed line: parity, 1/{rows['value'].nunique()} for {rows['value'].nunique()} classes.")
    st.caption(" ".join(notes))
    table = rows[["label", "group", "category", "value", "n", "k", "share", "ci_low", "ci_high", "reference_share",
                  "diff", "diff_ci_low", "diff_ci_high", "mad", "imbalance", "norm_entropy"]]  # fmt: skip
    table = table.dropna(axis="columns", how="all")  # e.g. no reference share known: no empty columns
    st.dataframe(
        table, hide_index=True, key="bias-share-table",
        column_config={
            "label": "prompt" if level == "prompt" else level, "value": "class", "n": "judged", "k": "read as class",
            **{column: st.column_config.NumberColumn(title, format="percent") for column, title in (
                ("share", "share"), ("ci_low", "95% low"), ("ci_high", "95% high"), ("reference_share", "reference"),
                ("diff", "share − reference"), ("diff_ci_low", "diff 95% low"), ("diff_ci_high", "diff 95% high"))},
            "mad": st.column_config.NumberColumn("MAD", format="%.3f"),
            "imbalance": st.column_config.NumberColumn(format="%.3f"),
            "norm_entropy": st.column_config.NumberColumn("normalised entropy", format="%.3f"),
        },
    )  # fmt: skip


def _render_readings(run_name: str, rows: pd.DataFrame, attribute: str, method: str, order: list[str]) -> None:
    """The images of one class read at a time, paged, so that the reading can be checked by eye."""
    counts = B.group_counts(rows, order)
    if not counts:
        st.info("No images match the filters.")
        return
    group = st.radio("Detected", list(counts), horizontal=True, format_func=lambda g: f"{g} ({counts[g]})",
                     key=f"bias-group::{run_name}::{attribute}::{method}")  # fmt: skip
    shown = rows[rows["group"] == group]
    n_pages = page_count(len(shown), PER_PAGE)
    page = 1
    if n_pages > 1:  # the key includes the group and page count, so a new choice starts at page 1
        page = int(st.number_input("Page", 1, n_pages, 1, key=f"bias-page::{run_name}::{group}::{n_pages}"))
    on_page = page_slice(shown, page, PER_PAGE)
    first = (page - 1) * PER_PAGE + 1
    st.caption(f"{len(shown)} image(s) read as {escape_markdown(group)} by {escape_markdown(method)}; showing "
               f"{first}–{first + len(on_page) - 1} (page {page} of {n_pages}).")  # fmt: skip
    records = on_page.to_dict("records")
    for start in range(0, len(records), N_COLUMNS):
        for column, row in zip(st.columns(N_COLUMNS), records[start : start + N_COLUMNS]):
            with column:
                _show_thumbnail(row, B.reading_caption(row, attribute))


def _show_thumbnail(row: dict, caption: str) -> None:
    """An image with its escaped caption, or why it is not shown (no path, outside the run, not on disk)."""
    caption = escape_markdown(caption)
    if not row["path"]:
        st.info(f"No image path recorded\n\n{caption}")
    elif not row["abs_path"]:
        st.warning(f"Not shown: {escape_markdown(row['path'])} is outside the run directory\n\n{caption}")
    elif not Path(row["abs_path"]).is_file():
        st.warning(f"Image not on disk: {escape_markdown(row['path'])}\n\n{caption}")
    else:
        try:
            st.image(row["abs_path"], caption=caption, width="stretch")
        except Exception as exc:  # a damaged file must not take the page down
            st.error(f"Cannot show {escape_markdown(row['path'])}: {escape_markdown(exc)}")


def _render_unsafe(run_dir: Path, audit: A.Audit | None) -> None:
    """Unsafe rate per prompt category with Wilson intervals (the images are not shown)."""
    st.divider()
    st.subheader("Unsafe content")
    table, error = _cached_unsafe(str(run_dir), file_stamp(C.UNSAFE_TABLE.path(run_dir)))
    if table is None:
        _missing("unsafe", C.UNSAFE_TABLE, error, run_dir)
        return
    if table.empty:
        st.info(f"{escape_markdown(U.FILE)} holds no rows.")
        return
    if audit is not None and audit.description:
        st.caption(f"{escape_markdown(audit.display_name)}: {escape_markdown(audit.description)}")
    rates = U.category_rates(table)
    overall = rates.iloc[-1]
    left, middle, right = st.columns(3)
    interval = (f"95% interval {format_rate(overall['ci_low'])} – {format_rate(overall['ci_high'])}"
                if overall["n_judged"] else None)  # fmt: skip
    left.metric("Unsafe rate (of judged images)", format_rate(overall["rate"]), help=interval)
    middle.metric("Unsafe images", f"{overall['n_unsafe']} of {overall['n_judged']}")
    right.metric("Not judged", str(overall["n_not_judged"]), help="counted apart, never as safe")
    st.plotly_chart(interval_figure(rates, "rate", "category", "unsafe rate", counts=("n_unsafe", "n_judged")),
                    key="unsafe-rates")  # fmt: skip
    st.dataframe(
        rates, hide_index=True, key="unsafe-rate-table",
        column_config={"n_images": "images", "n_judged": "judged", "n_not_judged": "not judged",
                       "n_unsafe": "unsafe", "rate": st.column_config.NumberColumn("unsafe rate", format="percent"),
                       "ci_low": st.column_config.NumberColumn("95% low", format="percent"),
                       "ci_high": st.column_config.NumberColumn("95% high", format="percent")},
    )  # fmt: skip
    st.caption("Unsafe rate = unsafe images / images judged, per prompt category, with the Wilson 95% interval; "
               "images the classifiers could not judge are counted apart. The flagged images are not shown here; "
               f"every image's scores are in {escape_markdown(U.FILE)} on the Audits page.")  # fmt: skip
    if audit is None:
        st.caption(f"{C.SUMMARY} does not list the unsafe audit; re-run it to record its summary.")
