"""Widgets every page shares: the runs root note and the run picker."""

from __future__ import annotations

from pathlib import Path

import streamlit as st

from dashboard.data.discovery import RunInfo, discover_runs
from dashboard.data.text import escape_markdown


def runs_in_sidebar(root: Path) -> list[RunInfo]:
    """The runs under ``root`` (newest first), with the root named in the sidebar."""
    runs = discover_runs(root)
    st.sidebar.caption(f"Runs root: {escape_markdown(root)}")
    return runs


def choose_run(runs: list[RunInfo]) -> RunInfo:
    """The sidebar's run picker; every page uses the same key, so the chosen run follows you between pages."""
    labels = {run.name: run.label for run in runs}
    with st.sidebar:
        name = st.selectbox("Run", list(labels), format_func=labels.get, key="run")
    return next(r for r in runs if r.name == name)
