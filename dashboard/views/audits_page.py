"""The "Audits" page: every audit probe a run recorded, whatever probe made it.

Reads ``summary.json["audits"]`` (``bench.contract.record_audit``): for each
probe its display name and description, its headline value with the way it is
good (higher or lower), its summary block, and its table by the file it
declared, with a download button; a probe's further tables
(``audit/<probe>_<part>.parquet``) sit beside it.  A probe added by a plugin is
shown here with no page of its own and no edit of the dashboard.  Tables under
``audit/`` that summary.json does not list (runs audited before probes were
recorded) are shown last, without a headline.

Escaping: every run-derived string shown as Markdown (names, descriptions,
file names, errors) goes through ``escape_markdown``; tables use
``st.dataframe`` and the summary block ``st.json``, which draw text literally.
"""

from __future__ import annotations

import shlex
from pathlib import Path

import pandas as pd
import streamlit as st

from bench import contract as C
from dashboard.data import audits as A
from dashboard.data.reading import file_stamp, load_summary, resolve_image
from dashboard.data.text import MISSING, direction, escape_markdown, format_value
from dashboard.pages import page_title
from dashboard.views.common import choose_run, runs_in_sidebar

MAX_ROWS = 5000  # rows drawn per table; the download has them all


def audit_command(run_dir: Path) -> str:
    """How to list the probes and run one on ``run_dir`` (shown when the run has no audit)."""
    return (
        "t2i-audit probes                         # the audit probes, built-in and plugins\n"
        f"t2i-audit NAME {shlex.quote(str(run_dir))} ...   # run one on this run"
    )


@st.cache_data(show_spinner=False, max_entries=32)
def _cached_table(run_dir: str, file: str, name: str, stamp: tuple[int, int]) -> tuple[pd.DataFrame | None, str | None]:
    """``audits.load_audit_table`` cached per (run, file, file mtime and size)."""
    return A.load_audit_table(Path(run_dir), file, name)


def render(root: Path) -> None:
    """Draw the Audits page for the runs under ``root``."""
    runs = runs_in_sidebar(root)
    if not runs:
        st.title("Audits")
        st.info(f"No runs found in {escape_markdown(root)}; make one (see the Runs page), audit it, then reload.")
        return
    run = choose_run(runs)
    st.title(f"Audits · {escape_markdown(run.name)}")

    summary, error = load_summary(run.path)
    if summary is None and (run.path / C.SUMMARY).is_file():
        st.error(f"The audits of this run cannot be listed: {escape_markdown(error)}")
        return
    recorded, problems = A.list_audits(summary)
    for problem in problems:
        st.warning(escape_markdown(problem))
    audits = A.with_tables(run.path, recorded)
    if not audits:
        st.info("No audits recorded for this run yet. Run an audit probe on it, then reload this page:")
        st.code(audit_command(run.path), language="bash")
        return

    listed = [a for a in audits if a.recorded]
    st.caption(
        f"{len(listed)} audit(s) recorded in {C.SUMMARY}. Each shows its headline, its summary block and "
        "its tables (download the full files below each table)."
    )
    for i, audit in enumerate(audits):
        if audit.recorded:
            _render_audit(run.path, audit, i)
    unlisted = [a for a in audits if not a.recorded]
    if unlisted:
        st.subheader("Other audit tables")
        st.caption(f"Tables under {C.AUDIT_DIR}/ that {C.SUMMARY} does not list (re-run their audit to record it).")
        for i, audit in enumerate(unlisted, start=len(audits)):
            _render_table(run.path, audit.table, audit.name, f"{i}-0")


def _render_audit(run_dir: Path, audit: A.Audit, i: int) -> None:
    """One recorded audit: headline, description, summary block, tables."""
    with st.container(border=True, key=f"audit-{i}"):  # the key gives it a CSS class (browser tests)
        st.subheader(escape_markdown(audit.display_name))
        value = audit.headline_value
        left, right = st.columns([1, 2])
        left.metric(
            escape_markdown(audit.headline or "headline"), MISSING if audit.block is None else format_value(audit.headline, value),
            help=direction(audit.higher_is_better) or None,
        )  # fmt: skip
        notes = [escape_markdown(audit.description)] if audit.description else []
        if audit.higher_is_better is not None:
            notes.append(f"Headline **{escape_markdown(audit.headline)}**: {direction(audit.higher_is_better)}.")
        notes.append(f"Probe `{escape_markdown(audit.name)}`; summary key `{escape_markdown(audit.summary_key)}`.")
        shown_on = page_title(audit.page) if audit.page and audit.page != "audits" else None
        if shown_on:
            notes.append(f"Also shown on the **{escape_markdown(shown_on)}** page.")
        right.markdown("\n\n".join(notes))
        if audit.block is None:
            st.warning(f"{C.SUMMARY} has no block {escape_markdown(repr(audit.summary_key))} for this audit.")
        else:
            with st.expander("Summary block"):
                st.json(audit.block, expanded=True)
        _render_table(run_dir, audit.table, audit.name, f"{i}-0")
        for j, part in enumerate(audit.parts, start=1):
            _render_table(run_dir, part, audit.name, f"{i}-{j}")


def _render_table(run_dir: Path, file: str, name: str, key: str) -> None:
    """A table of the run by file name, with download buttons (the file as written, and CSV)."""
    st.markdown(f"**{escape_markdown(file or MISSING)}**")
    path = resolve_image(run_dir, file)
    df, error = _cached_table(str(run_dir), file, name, file_stamp(path) if path else (0, 0))
    if df is None:
        if path is not None and path.is_file():
            st.error(f"This table cannot be shown: {escape_markdown(error)}")
        else:
            st.info(escape_markdown(error))
        return
    st.dataframe(df if len(df) <= MAX_ROWS else df.head(MAX_ROWS), hide_index=True, key=f"audit-table-{key}")
    st.caption(f"{len(df)} rows" + (f"; the first {MAX_ROWS} shown" if len(df) > MAX_ROWS else ""))
    stem = Path(file).stem
    left, right = st.columns(2)
    left.download_button(  # data made on click only: a big table costs nothing until it is wanted
        f"Download {path.name}", path.read_bytes, file_name=path.name, mime="application/vnd.apache.parquet",
        key=f"audit-download-{key}", on_click="ignore", icon=":material/download:",
    )  # fmt: skip
    right.download_button(
        f"Download {stem}.csv", lambda: df.to_csv(index=False), file_name=f"{stem}.csv", mime="text/csv",
        key=f"audit-csv-{key}", on_click="ignore", icon=":material/download:",
    )  # fmt: skip
