"""The "Overview" page (the landing page): every run under the runs root in one sortable table.

Per run: status and the one-line reason when it is incomplete or damaged,
model, prompt set, images listed / expected, the headline metrics with their
95% intervals, and the audits that were run (``dashboard.data.overview``).
The "Open" column links to the Runs page with ``?run=NAME``, and so does the
page link under the table.

``st.dataframe`` draws cell text literally (no Markdown), so run-derived cell
text is shown as it is; every run-derived string outside the table (notes,
labels, captions) goes through ``escape_markdown``.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import streamlit as st

from dashboard.data import overview as O
from dashboard.data.discovery import RunInfo, default_run
from dashboard.data.text import escape_markdown
from dashboard.views.common import CHOSEN_KEY, runs_in_sidebar

RUNS_PAGE = "runs"  # the registry name of the page a run opens in
OPEN_KEY = "overview_open"


@st.cache_data(show_spinner=False, max_entries=256)
def _cached_overview(fields: tuple, stamp: tuple) -> O.RunOverview:
    """``overview.run_overview`` cached per run (its ``RunInfo`` fields) and the stamps of the files it reads."""
    return O.run_overview(RunInfo(*fields))


def _overview(run: RunInfo) -> O.RunOverview:
    fields = (run.name, run.path, run.created, run.sort_key, run.complete, run.error, run.damage)
    return _cached_overview(fields, O.run_stamp(run.path))


def _runs_page() -> tuple[str, st.Page | None]:
    """The Runs page's url_path and a ``st.Page`` that links to it (its hash comes from the url_path)."""
    from dashboard.pages import PAGES

    try:
        info = PAGES.get(RUNS_PAGE)
    except Exception:  # noqa: BLE001 - no Runs page: no links
        return "runs", None
    return info.url_path, st.Page(lambda: None, title=info.title, icon=info.icon, url_path=info.url_path)


def column_config(table: pd.DataFrame) -> dict:
    """The table's column config: labels, help, number formats, the link column."""
    config: dict = {
        "run": st.column_config.TextColumn("Run", pinned=True),
        "open": st.column_config.LinkColumn("Open", help="Open this run in the Runs page", display_text="Runs page ↗"),
        "status": st.column_config.TextColumn("Status", help="complete, incomplete or damaged"),
        "note": st.column_config.TextColumn("Why not complete", width="medium"),
        "model": st.column_config.TextColumn("Model"),
        "prompt_set": st.column_config.TextColumn("Prompt set"),
        "n_images": st.column_config.NumberColumn("Images", help="rows of samples.parquet", format="%d"),
        "n_expected": st.column_config.NumberColumn("Expected", help="prompts × images per prompt × guidance scales",
                                                    format="%d"),
        "audits": st.column_config.TextColumn("Audits", help="summary.json[\"audits\"]: probe (headline)", width="large"),
    }  # fmt: skip
    for column in table.columns[len(O.BASE_COLUMNS) :]:
        if column.endswith(O.CI_SUFFIX):
            config[column] = st.column_config.TextColumn(column, help="95% interval of the value on its left")
        else:
            config[column] = st.column_config.NumberColumn(column, help="all images, all guidance scales",
                                                           format="%.4g")  # fmt: skip
    return config


def column_order(table: pd.DataFrame) -> list[str]:
    """Run, link, status, counts, model, prompt set, the metrics with their intervals, audits, then the reason."""
    metrics = list(table.columns[len(O.BASE_COLUMNS) :])
    return ["run", "open", "status", "n_images", "n_expected", "model", "prompt_set", *metrics, "audits", "note"]


def render(root: Path) -> None:
    """Draw the Overview page for the runs under ``root``."""
    runs = runs_in_sidebar(root)
    if not runs:
        from dashboard.views.runs_page import render_no_runs

        render_no_runs(root)
        return
    st.title("Overview")
    url_path, runs_page = _runs_page()
    rows = [_overview(run) for run in runs]
    table = O.overview_table(rows, url_path)
    n_damaged = sum(r.status == "damaged" for r in rows)
    n_complete = sum(r.status == "complete" for r in rows)
    st.caption(escape_markdown(
        f"{len(rows)} runs under {root}: {n_complete} complete, {len(rows) - n_complete - n_damaged} incomplete, "
        f"{n_damaged} damaged.  Headline metrics pool all images and guidance scales; click a column to sort."
    ))  # fmt: skip
    st.dataframe(table, column_config=column_config(table), column_order=column_order(table), hide_index=True,
                 width="stretch", key="overview_table")  # fmt: skip
    for row in rows:
        if row.status == "damaged":
            st.warning(f"{escape_markdown(row.name)} is damaged: {escape_markdown(row.note)}",
                       icon=":material/broken_image:")  # fmt: skip
    sources = sorted({r.metrics_source for r in rows if r.metrics_source})
    if sources:
        st.caption(escape_markdown(f"Headline metrics from {' and '.join(sources)}."))

    if runs_page is not None:
        names = [r.name for r in runs]
        chosen = st.session_state.get(CHOSEN_KEY)
        if st.session_state.get(OPEN_KEY) not in names:
            st.session_state[OPEN_KEY] = chosen if chosen in names else (default_run(runs) or runs[0]).name
        left, right = st.columns([2, 3], vertical_alignment="bottom")
        name = left.selectbox("Open a run", names, key=OPEN_KEY)
        right.page_link(runs_page, label=f"Browse {escape_markdown(name)} in the Runs page",
                        icon=":material/photo_library:", query_params={"run": name})  # fmt: skip
    st.download_button("Download this table (CSV)", table.to_csv(index=False).encode("utf-8"),
                       file_name="runs-overview.csv", mime="text/csv", on_click="ignore")  # fmt: skip
