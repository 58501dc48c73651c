"""The Streamlit app: ``streamlit run dashboard/app.py -- --runs DIR``.

Usually started by ``t2i-dashboard`` (``dashboard.cli``).  The runs root comes
from ``--runs`` after Streamlit's ``--``, else the ``T2I_RUNS_DIR`` environment
variable, else ``./runs``.  Pages live in ``dashboard.views`` and are listed
in ``pages`` in ``main`` below (Runs, Metrics, Memorization); add a page there (bias, ...).

Importing this module has no side effects; Streamlit runs it as ``__main__``.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

try:
    import dashboard  # noqa: F401
except ImportError:  # run as a script from a source checkout: make `dashboard` importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import streamlit as st

from dashboard.views import memorization_page, metrics_page, runs_page

ENV_RUNS_DIR = "T2I_RUNS_DIR"
DEFAULT_RUNS_DIR = "runs"


def runs_root(argv: list[str] | None = None, environ: dict | None = None) -> Path:
    """The runs root: ``--runs`` in ``argv``, else ``$T2I_RUNS_DIR``, else ``./runs``."""
    argv = sys.argv[1:] if argv is None else argv
    environ = os.environ if environ is None else environ
    parser = argparse.ArgumentParser(add_help=False)
    parser.add_argument("--runs", default=None)
    args, _ = parser.parse_known_args(argv)
    return Path(args.runs or environ.get(ENV_RUNS_DIR) or DEFAULT_RUNS_DIR)


def main() -> None:
    """Configure the page and run the selected page of the navigation."""
    root = runs_root()
    st.set_page_config(page_title="t2i-audit dashboard", page_icon=":material/photo_library:", layout="wide")

    def runs() -> None:
        runs_page.render(root)

    def metrics() -> None:
        metrics_page.render(root)

    def memorization() -> None:
        memorization_page.render(root)

    pages = [
        st.Page(runs, title="Runs", icon=":material/photo_library:", url_path="runs", default=True),
        st.Page(metrics, title="Metrics", icon=":material/query_stats:", url_path="metrics"),
        st.Page(memorization, title="Memorization", icon=":material/content_copy:", url_path="memorization"),
    ]
    st.navigation(pages).run()


if __name__ == "__main__":
    main()
