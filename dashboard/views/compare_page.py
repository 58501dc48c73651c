"""The "Compare" page: two or more runs (each optionally at one guidance scale) side by side.

* **Statistics**: ``bench.compare.compare_runs`` on the picked sides (per-image
  metrics only, ``set_metrics=False``), cached per the runs' file stamps: each
  metric of side A against each other side, the paired difference with its 95%
  interval, significant rows highlighted, the tests named below the table.
* **Guidance curves**: one metric against guidance, a line per picked run with
  its 95% intervals as error bars (``sweep.parquet``, else ``metrics.parquet``).
* **Side by side**: the same prompt and seed (sample index) across the sides, a
  row per prompt and a column per run × guidance, each image with its detector
  verdict and CLIP score (``image_scores.parquet``).  Filters: category, and
  the verdict on each side ("prompts where A is right and B is wrong").

The picked sides and the filters live in the URL (``?side=demo&side=rival@7.5
&category=counting&verdict=right,wrong&sample=0``), so a comparison can be shared
by link, and in session state, so they survive a visit to another page.

Escaping: every run-derived string shown as Markdown (run names, prompts,
categories, notes, errors) goes through ``escape_markdown``; tables use
``st.dataframe``, which draws cell text literally; plotly labels are ``html.escape``d.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import pandas as pd
import streamlit as st

from bench import contract as C
from dashboard.data import compare as K
from dashboard.data import metrics as M
from dashboard.data import samples as S
from dashboard.data.reading import file_stamp, missing_image_reason
from dashboard.data.text import MISSING, escape_markdown, truncate
from dashboard.views.common import runs_in_sidebar
from dashboard.views.metrics_page import describe_metric, guidance_figure
from dashboard.views.runs_page import load_samples_cached

SIDE_PARAM, CATEGORY_PARAM, VERDICT_PARAM, SAMPLE_PARAM = "side", "category", "verdict", "sample"
SIDES_KEY, CATEGORIES_KEY, SAMPLE_KEY = "compare-sides", "compare-categories", "compare-sample"
STATE_KEY = "compare_state"  # not a widget key: outlives a visit to another page
RESAMPLES = 1000
PROMPTS_PER_PAGE = 8
MAX_GRID_COLUMNS = 8  # run × guidance columns drawn; more would squeeze the images to nothing
GOOD, BAD, SIGNIFICANT = "#d8f0dc", "#f8d7d7", "#fff3c4"  # row colours: B better, B worse, direction unknown


@st.cache_data(show_spinner=False, max_entries=16)
def _cached_scores(run_dir: str, stamp: tuple[int, int]) -> tuple[pd.DataFrame | None, str | None]:
    """``compare.load_image_scores`` cached per (run, image_scores.parquet mtime and size)."""
    return K.load_image_scores(Path(run_dir))


@st.cache_data(show_spinner=False, max_entries=16)
def _cached_curves(run_dir: str, stamps: tuple) -> tuple[pd.DataFrame | None, str | None, str | None]:
    """``compare.curve_table`` cached per (run, its files' stamps)."""
    return K.curve_table(Path(run_dir))


@st.cache_data(show_spinner="Comparing the runs …", max_entries=16)
def compare_sides(sides: tuple[tuple[str, float | None], ...], stamps: tuple,
                  resamples: int = RESAMPLES) -> tuple[pd.DataFrame | None, list[str], str | None]:
    """``bench.compare.compare_runs`` on ``(run_dir, guidance)`` sides, per-image metrics only; cached per the
    sides and their runs' file stamps.  Returns ``(table, notes, None)`` or ``(None, [], error)``."""
    try:
        from bench.compare import Side, compare_runs  # numpy/pandas only: no torch
    except ImportError as exc:
        return None, [], f"the statistics need bench.compare, which this installation lacks ({exc})"
    from bench.errors import UserError

    try:
        result = compare_runs([Side(run=Path(run), guidance=guidance) for run, guidance in sides],
                              resamples=resamples, seed=0, set_metrics=False)  # fmt: skip
    except UserError as exc:
        return None, [], str(exc)
    return C.coerce(result.table, C.COMPARE_TABLE), [str(n) for n in result.notes], None


# ------------------------------------------------------------------ URL and session state


def _state() -> dict:
    return st.session_state.setdefault(STATE_KEY, {})


def _wanted(param: str) -> list[str]:
    """The URL's values of ``param``, else the ones this session last had."""
    return list(st.query_params.get_all(param)) or list(_state().get(param, []))


def _keep(param: str, values: Sequence[str]) -> None:
    """Remember ``values`` for this session and put them in the URL (repeated ``param``), removing it when empty."""
    values = [str(v) for v in values]
    _state()[param] = values
    if list(st.query_params.get_all(param)) != values:
        if values:
            st.query_params[param] = values
        elif param in st.query_params:
            del st.query_params[param]


def _pick_sides(options: list[str], default: list[str]) -> list[K.SideChoice]:
    """The sides multiselect (A first), started from the URL / session / default; unknown labels get a note."""
    if SIDES_KEY not in st.session_state:
        wanted = _wanted(SIDE_PARAM)
        known = [w for w in dict.fromkeys(wanted) if w in options]
        unknown = [w for w in wanted if w not in options]
        if unknown:
            st.info(f"No such side under the runs root: {escape_markdown(', '.join(truncate(u, 40) for u in unknown))}.",
                    icon=":material/link_off:")  # fmt: skip
        st.session_state[SIDES_KEY] = known if known else default
    else:  # a run may have gone since the last rerun: a picked value that is no option would raise
        st.session_state[SIDES_KEY] = [v for v in st.session_state[SIDES_KEY] if v in options]
    with st.sidebar:
        picked = st.multiselect(
            "Sides (A first)", options, key=SIDES_KEY, placeholder="Pick two or more runs",
            help="A run over all its guidance scales, or a run at one scale (name@scale). "
                 "The first side is A; every other side is compared with it.",
        )  # fmt: skip
    _keep(SIDE_PARAM, picked)
    return [K.parse_side(label) for label in picked]


# ------------------------------------------------------------------ the page


def render(root: Path) -> None:
    """Draw the Compare page for the runs under ``root``."""
    runs = [run for run in runs_in_sidebar(root) if not run.damage]
    st.title("Compare runs")
    if not runs:
        st.info(f"No readable runs found in {escape_markdown(root)}; make two (see the Runs page), then reload.")
        return
    samples = {run.name: load_samples_cached(run.path)[0] for run in runs}
    with_images = [(run.name, S.guidance_values(samples[run.name])) for run in runs if samples[run.name] is not None]
    if not with_images:
        st.info("No run under the runs root has images yet; generate some, then reload.")
        return
    paths = {run.name: run.path for run in runs}
    sides = _pick_sides(K.side_options(with_images), K.default_sides(with_images))
    if len(sides) < 2:
        st.info("Pick at least two sides in the sidebar: two runs, or one run at two guidance scales.")
        return
    side_samples = [K.at_guidance(samples[s.run], s.guidance) for s in sides]
    side_scores = [_cached_scores(str(paths[s.run]), file_stamp(C.IMAGE_SCORES_TABLE.path(paths[s.run])))[0]
                   for s in sides]  # fmt: skip
    prompts = K.prompts_of(side_samples)
    categories = _pick_categories(prompts)
    _render_statistics(sides, paths, categories)
    _render_curves(sides, paths)
    _render_grid(sides, side_samples, side_scores, prompts, categories)


def _pick_categories(prompts: pd.DataFrame) -> list[str]:
    options = sorted(prompts["category"].unique())
    if CATEGORIES_KEY not in st.session_state:
        st.session_state[CATEGORIES_KEY] = [c for c in _wanted(CATEGORY_PARAM) if c in options]
    else:  # other sides may lack a category picked before
        st.session_state[CATEGORIES_KEY] = [c for c in st.session_state[CATEGORIES_KEY] if c in options]
    with st.sidebar:
        st.subheader("Filters")
        chosen = st.multiselect("Category", options, key=CATEGORIES_KEY, placeholder="All categories")
    _keep(CATEGORY_PARAM, chosen)
    return chosen


# ------------------------------------------------------------------ statistics


def row_colours(rows: pd.DataFrame) -> list[str]:
    """A colour per row of a ``COMPARE_TABLE``: significant rows green when B is better than A, red when
    worse, yellow when the metric's direction is unknown; "" for the others."""
    out = []
    for significant, delta, higher in zip(rows["significant"], rows["delta"], rows["higher_is_better"]):
        if not bool(significant):
            out.append("")
        elif higher is None or pd.isna(higher):
            out.append(SIGNIFICANT)
        else:
            out.append(GOOD if (delta > 0) == bool(higher) else BAD)
    return out


def statistics_view(rows: pd.DataFrame) -> pd.DataFrame:
    """Rows of a ``COMPARE_TABLE`` as shown: readable metric names and column titles."""
    return pd.DataFrame({
        "metric": [M.metric_label(n, *describe_metric(n)) for n in rows["metric"]],
        "subset": rows["subset"], "A": rows["run_a"], "B": rows["run_b"],
        "value A": rows["value_a"], "value B": rows["value_b"], "Δ (B − A)": rows["delta"],
        "95% low": rows["ci_low"], "95% high": rows["ci_high"], "significant": rows["significant"],
        "paired": rows["paired"], "shared prompts": rows["n_shared_prompts"], "n A": rows["n_a"], "n B": rows["n_b"],
        "note": rows["note"],
    })  # fmt: skip


def _render_statistics(sides: list[K.SideChoice], paths: dict[str, Path], categories: list[str]) -> None:
    st.subheader("Statistics")
    key = tuple((str(paths[s.run]), s.guidance) for s in sides)
    stamps = tuple(K.run_stamps(paths[s.run]) for s in sides)
    table, notes, error = compare_sides(key, stamps)
    if table is None:
        st.warning(f"No statistics for these sides: {escape_markdown(error)}", icon=":material/info:")
        return
    subsets = [C.ALL_SUBSET] + [f"{C.CATEGORY_PREFIX}{c}" for c in categories]
    rows = K.compare_view(table, subsets)
    if rows.empty:
        st.info("The comparison has no rows for these subsets.")
    else:
        colours = row_colours(rows)
        styled = statistics_view(rows).style.format(
            {c: "{:.4g}" for c in ("value A", "value B", "Δ (B − A)", "95% low", "95% high")}
            | {c: "{:.0f}" for c in ("shared prompts", "n A", "n B")}, na_rep=MISSING,
        ).apply(lambda row: [f"background-color: {colours[row.name]}" if colours[row.name] else ""] * len(row),
                axis=1)  # fmt: skip
        st.dataframe(styled, hide_index=True, key="compare-table")
    a = sides[0].label
    overall = rows[rows["subset"] == C.ALL_SUBSET] if not rows.empty else table[table["subset"] == C.ALL_SUBSET]
    tests = [t for t in dict.fromkeys(overall["test"]) if t]  # category rows: the same test on fewer prompts
    st.caption(
        f"Each row: side A ({escape_markdown(a)}) against another side; Δ = B − A with its 95% interval. "
        "Significant (the interval excludes 0) rows are coloured: green where B is better, red where worse. "
        + (f"Test: {escape_markdown('; '.join(tests))}." if tests else "")
        + (" Rows: all images" + (" and the chosen categories." if categories else "; pick categories in the "
           "sidebar to add theirs.") if not rows.empty else "")
    )  # fmt: skip
    for note in notes:
        st.caption(f"Note: {escape_markdown(note)}")


# ------------------------------------------------------------------ curves


def _render_curves(sides: list[K.SideChoice], paths: dict[str, Path]) -> None:
    st.subheader("Guidance curves")
    runs = list(dict.fromkeys(s.run for s in sides))
    tables, sources, problems = {}, {}, []
    for run in runs:
        table, source, error = _cached_curves(str(paths[run]), K.run_stamps(paths[run]))
        if table is None:
            problems.append(f"{run}: {error}")
        else:
            tables[run], sources[run] = table, source
    for problem in problems:
        st.caption(f"No curve for {escape_markdown(problem)}")
    options = list(dict.fromkeys(c for t in tables.values() for c in M.metric_columns(t)))
    if not options:
        st.info("No metric per guidance scale in the picked runs (score them to get curves).")
        return
    default = next((c for c in M.ALIGNMENT_METRICS if c in options), options[0])
    metric = st.selectbox("Metric", options, index=options.index(default), key="compare-curve-metric",
                          format_func=lambda c: describe_metric(c)[0])  # fmt: skip
    curves = [(run, M.guidance_curve(table, metric)) for run, table in tables.items()]
    marked = [(s.run, s.guidance) for s in sides if s.guidance is not None]
    st.plotly_chart(guidance_figure(curves, metric, marked), key="compare-curves")
    shown = ", ".join(f"{escape_markdown(run)} from {sources[run]}" for run in tables)
    st.caption(f"One line per run ({shown}); bars: 95% intervals where the run has them; a ring marks a side "
               "picked at one guidance scale.")  # fmt: skip


# ------------------------------------------------------------------ the grid


def _pick_verdicts(sides: list[K.SideChoice]) -> list[str]:
    """One "any / right / wrong" choice per side (sidebar), kept in the URL as ``verdict=right,wrong``."""
    wanted = (_wanted(VERDICT_PARAM) or [""])[0].split(",")
    chosen = []
    with st.sidebar:
        st.caption("Detector verdict per side (a prompt is right when at least half its images are):")
        for i, side in enumerate(sides):
            key = f"compare-verdict-{i}::{side.label}"
            if key not in st.session_state:
                st.session_state[key] = wanted[i] if i < len(wanted) and wanted[i] in K.VERDICT_CHOICES else "any"
            chosen.append(st.selectbox(f"{chr(65 + i) if i < 26 else i}: {side.label}", K.VERDICT_CHOICES, key=key))
    _keep(VERDICT_PARAM, [",".join(chosen)] if any(c != "any" for c in chosen) else [])
    return chosen


def _pick_sample(indices: list[int]) -> int:
    if SAMPLE_KEY not in st.session_state or st.session_state[SAMPLE_KEY] not in indices:
        wanted = _wanted(SAMPLE_PARAM)
        start = int(wanted[0]) if wanted and wanted[0].lstrip("-").isdigit() else indices[0]
        st.session_state[SAMPLE_KEY] = start if start in indices else indices[0]
    with st.sidebar:
        sample = st.selectbox("Sample (seed)", indices, key=SAMPLE_KEY,
                              help="The grid shows the same sample index, i.e. the same seed, on every side.")
    _keep(SAMPLE_PARAM, [str(sample)] if sample != indices[0] else [])
    return int(sample)


def _render_grid(sides: list[K.SideChoice], side_samples: list, side_scores: list, prompts: pd.DataFrame,
                 categories: list[str]) -> None:
    st.subheader("Side by side")
    wants = _pick_verdicts(sides)
    indices = K.sample_indices(side_samples)
    if not indices:
        st.info("The sides share no sample index (seed); nothing to put side by side.")
        return
    sample = _pick_sample(indices)
    verdicts = [K.prompt_verdicts(scores, side.guidance) for scores, side in zip(side_scores, sides)]
    missing = [s.label for s, scores in zip(sides, side_scores) if scores is None]
    if missing and any(w != "any" for w in wants):
        st.warning(f"No per-image scores ({C.IMAGE_SCORES}) for {escape_markdown(', '.join(missing))}: "
                   "their verdict filter matches no prompt. Score the run to write them.")  # fmt: skip
    shown = K.filter_prompts(prompts, categories, wants, verdicts)
    columns = K.grid_columns(sides, side_samples)
    st.caption(f"{len(shown)} of {len(prompts)} prompts match the filters; sample {sample} (the same seed) on "
               f"every side. Under each image: the detector's verdict and the CLIP score.")  # fmt: skip
    with st.expander("Verdicts per prompt"):
        st.dataframe(K.verdict_summary(shown, [s.label for s in sides], verdicts), hide_index=True,
                     key="compare-verdicts")  # fmt: skip
    if shown.empty:
        st.info("No prompts match the filters.")
        return
    if len(columns) > MAX_GRID_COLUMNS:
        st.info(f"{len(columns)} run × guidance columns; the first {MAX_GRID_COLUMNS} are shown. Pick sides at one "
                "guidance scale (name@scale) to see others.")  # fmt: skip
        columns = columns[:MAX_GRID_COLUMNS]
    n_pages = S.page_count(len(shown), PROMPTS_PER_PAGE)
    page = 1
    if n_pages > 1:
        page = int(st.number_input("Page", 1, n_pages, 1, key=f"compare-page::{n_pages}"))
    notes = [K.scores_by_image(scores) for scores in side_scores]
    widths = [2] + [1] * len(columns)
    header = st.columns(widths)
    header[0].markdown("**Prompt**")
    for cell, column in zip(header[1:], columns):
        cell.markdown(f"**{escape_markdown(column.title)}**")
    for i, prompt in enumerate(S.page_slice(shown, page, PROMPTS_PER_PAGE).to_dict("records")):
        with st.container(border=True, key=f"compare-row-{i}"):
            cells = st.columns(widths)
            words = [f"{chr(65 + j) if j < 26 else j} {K.verdict_word(v.get(prompt['prompt_id'])) or MISSING}"
                     for j, v in enumerate(verdicts)]  # fmt: skip
            cells[0].markdown(f"**{escape_markdown(truncate(prompt['prompt'], 160))}**")
            cells[0].caption(escape_markdown(f"{prompt['prompt_id']} · {prompt['category']} · " + ", ".join(words)))
            for cell, column in zip(cells[1:], columns):
                with cell:
                    _grid_image(side_samples[column.side], prompt["prompt_id"], column, sample, notes[column.side])


def _grid_image(samples: pd.DataFrame | None, prompt_id: str, column: K.GridColumn, sample: int,
                notes: dict) -> None:
    row = K.grid_image(samples, prompt_id, column.guidance, sample)
    if row is None:
        st.caption("no image for this prompt and seed")
        return
    caption = escape_markdown(K.image_note(notes, str(row["image_id"])) or f"g={column.guidance:g}")
    if not row.get("exists"):
        st.caption(f"{missing_image_reason(row['path'], row['abs_path'])}: {escape_markdown(row['path'])}")
        return
    try:
        st.image(row["abs_path"], caption=caption, width="stretch")
    except Exception as exc:  # a damaged file must not take the page down
        st.error(f"Cannot show {escape_markdown(row['path'])}: {escape_markdown(exc)}")
