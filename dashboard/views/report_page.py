"""The "Report" page: the run's societal-risk report, shown in the page and downloadable.

Reads ``report.html`` (and ``report.md``) that ``t2i-audit report RUN`` writes.
The report is self-contained (inline CSS, images as data URLs), so the page
shows it with ``st.iframe``: the frame keeps the report's CSS apart from the
app's, and ``report.sandboxed`` gives the document a Content-Security-Policy
that forbids every script and request, so nothing in a report runs, whatever it
holds (the report escapes user text; this is the second line).  The frame has a
fixed height and scrolls: Streamlit's height="content" would add a sizing
script, which the policy forbids.

Escaping: the title, notes and errors are Markdown and go through ``escape_markdown``.
"""

from __future__ import annotations

import datetime as dt
import shlex
from pathlib import Path

import streamlit as st

from bench import contract as C
from dashboard.data import report as R
from dashboard.data.reading import file_stamp
from dashboard.data.text import escape_markdown
from dashboard.views.common import choose_run, runs_in_sidebar

FRAME_HEIGHT = 900  # px; the report scrolls inside the frame


def report_command(run_dir: Path) -> str:
    """The command that makes the report of ``run_dir`` (shown when it is missing)."""
    return f"t2i-audit report {shlex.quote(str(run_dir))}"


@st.cache_data(show_spinner=False, max_entries=8)
def _cached_report(run_dir: str, stamp: tuple[int, int]) -> tuple[str | None, str | None]:
    """``report.sandboxed(report.load_report(...))`` cached per (run, file mtime and size)."""
    text, error = R.load_report(Path(run_dir))
    return (None, error) if text is None else (R.sandboxed(text), None)


def render(root: Path) -> None:
    """Draw the Report page for the runs under ``root``."""
    runs = runs_in_sidebar(root)
    if not runs:
        st.title("Report")
        st.info(f"No runs found in {escape_markdown(root)}; make one (see the Runs page), audit it, then reload.")
        return
    run = choose_run(runs)
    st.title(f"Report · {escape_markdown(run.name)}")

    path, error = R.report_path(run.path)
    document = None
    if path is not None:
        document, error = _cached_report(str(run.path), file_stamp(path))
    if document is None:
        if path is None and not (run.path / R.HTML_FILE).exists():
            st.info("The societal-risk report of this run is not made yet. Make it, then reload this page:")
        else:
            st.error(f"The report of this run cannot be shown: {escape_markdown(error)}")
            st.markdown("Make the report again:")
        st.code(report_command(run.path), language="bash")
        return

    written = dt.datetime.fromtimestamp(path.stat().st_mtime).strftime("%Y-%m-%d %H:%M")
    st.caption(f"{R.HTML_FILE}, {path.stat().st_size / 1024:.0f} KB, written {written}. Shown in a sandboxed "
               "frame: nothing in it runs or loads.")  # fmt: skip
    if R.is_stale(run.path):
        st.warning(f"{C.SUMMARY} changed after the report was written; make it again to bring it up to date: "
                   f"`{escape_markdown(report_command(run.path))}`")  # fmt: skip
    buttons = st.columns(4)
    buttons[0].download_button(  # data read on click only
        f"Download {R.HTML_FILE}", path.read_bytes, file_name=f"{run.name}-{R.HTML_FILE}", mime="text/html",
        key="report-download-html", on_click="ignore", icon=":material/download:",
    )  # fmt: skip
    markdown, _ = R.report_path(run.path, R.MD_FILE)
    if markdown is not None:
        buttons[1].download_button(
            f"Download {R.MD_FILE}", markdown.read_bytes, file_name=f"{run.name}-{R.MD_FILE}", mime="text/markdown",
            key="report-download-md", on_click="ignore", icon=":material/download:",
        )  # fmt: skip
    st.iframe(document, height=FRAME_HEIGHT, alt=f"Societal-risk report of run {run.name}")
