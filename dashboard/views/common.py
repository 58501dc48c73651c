"""Widgets every page shares: the runs root note and the run picker.

The chosen run follows you between pages and lives in the URL:

* ``st.session_state[CHOSEN_KEY]`` (not a widget key, so Streamlit keeps it when
  the page changes) holds the run's name; every page's picker reads and writes it;
* ``?run=NAME`` (``st.query_params[RUN_PARAM]``) is kept equal to it, so a view
  can be shared by link; a name there that is not a run gives a one-line note
  and the default run (``discovery.default_run``: the newest complete, readable run).

A damaged run is labelled ``"(damaged: reason)"`` in the picker and every page
shows that reason when it is picked.  While the picked run is incomplete, a
fragment polls its file stamps (``discovery.live_stamp``: three ``stat`` calls)
every ``LIVE_REFRESH_S`` seconds and reruns the page when they change, so a run
being written refreshes by itself and its label turns "complete" when it is done.
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import streamlit as st

from dashboard.data.discovery import RunInfo, default_run, discover_runs, live_stamp
from dashboard.data.text import escape_markdown, truncate

RUN_PARAM = "run"  # the URL's query parameter
PICKER_KEY = "run"  # the picker widget's key (the same on every page)
CHOSEN_KEY = "chosen_run"  # session state that outlives page switches (widget state does not)
LIVE_REFRESH_S = 3.0  # poll period for a run that is still being written


def runs_in_sidebar(root: Path) -> list[RunInfo]:
    """The runs under ``root`` (newest first, re-read on every rerun), with the root named in the sidebar."""
    runs = discover_runs(root)
    st.sidebar.caption(f"Runs root: {escape_markdown(root)}")
    return runs


def _picked() -> None:
    """The picker's on_change: remember the run for every page and put it in the URL."""
    name = st.session_state.get(PICKER_KEY)
    st.session_state[CHOSEN_KEY] = name
    if name is not None:
        st.query_params[RUN_PARAM] = name


def _resolve(runs: list[RunInfo]) -> tuple[RunInfo, str | None]:
    """The run to show (URL, else this session's choice, else the default) and a note when the URL's is unknown."""
    by_name = {run.name: run for run in runs}
    fallback = by_name.get(st.session_state.get(CHOSEN_KEY)) or default_run(runs)
    wanted = st.query_params.get(RUN_PARAM)
    if wanted is None or wanted in by_name:
        return (by_name[wanted] if wanted is not None else fallback), None
    note = f"No run named “{truncate(wanted, 60)}” under the runs root; showing {fallback.name}."
    return fallback, note


def choose_run(runs: list[RunInfo]) -> RunInfo:
    """The sidebar's run picker, shared by every page: the chosen run follows you between pages and into the URL."""
    run, note = _resolve(runs)
    st.session_state[CHOSEN_KEY] = run.name
    st.session_state[PICKER_KEY] = run.name  # set before the widget exists, so no default index is passed
    if st.query_params.get(RUN_PARAM) != run.name:
        st.query_params[RUN_PARAM] = run.name
    labels = {r.name: r.label for r in runs}
    with st.sidebar:
        st.selectbox("Run", list(labels), format_func=labels.get, key=PICKER_KEY, on_change=_picked)
    if note:
        st.info(escape_markdown(note), icon=":material/link_off:")
    if run.damage:
        st.warning(f"This run is damaged: {escape_markdown(run.damage)}", icon=":material/broken_image:")
    if not run.complete and not run.damage:
        _watch_live_run(run.path, live_stamp(run.path))
    return run


def _watch_live_run(run_dir: Path, stamp: tuple) -> None:
    """Rerun the whole page when an incomplete run's files change (a fragment polling three ``stat`` calls)."""

    @st.fragment(run_every=timedelta(seconds=LIVE_REFRESH_S))
    def watch() -> None:
        if live_stamp(run_dir) != stamp:
            st.rerun(scope="app")

    watch()
