"""The Streamlit app: ``streamlit run dashboard/app.py -- --runs DIR``.

Usually started by ``t2i-dashboard`` (``dashboard.cli``).  The runs root comes
from ``--runs`` after Streamlit's ``--``, else the ``T2I_RUNS_DIR`` environment
variable, else ``./runs``.  The navigation is built from the page registry
``dashboard.pages.PAGES`` (Overview, the landing page; Runs, the prompt browser; Metrics, Compare, Memorization, Audits, Bias, Report; and any plugin
page of the ``t2i_audit.pages`` entry point group); add a page there, not here.

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

from dashboard.data.text import escape_markdown
from dashboard.pages import PageInfo, load_pages

ENV_RUNS_DIR = "T2I_RUNS_DIR"
DEFAULT_RUNS_DIR = "runs"
#: The tab's icon.  An emoji becomes an inline SVG (a data: URL); a ":material/...:" icon would make
#: the browser fetch it from fonts.gstatic.com on every load, and this dashboard makes no external request.
FAVICON = "🔍"


def runs_root(argv: list[str] | None = None, environ: dict | None = None) -> Path:
    """The runs root: ``--runs`` in ``argv``, else ``$T2I_RUNS_DIR``, else ``./runs``."""
    argv = sys.argv[1:] if argv is None else argv
    environ = os.environ if environ is None else environ
    parser = argparse.ArgumentParser(add_help=False)
    parser.add_argument("--runs", default=None)
    args, _ = parser.parse_known_args(argv)
    return Path(args.runs or environ.get(ENV_RUNS_DIR) or DEFAULT_RUNS_DIR)


def _page(info: PageInfo, root: Path, default: bool) -> st.Page:
    """The ``st.Page`` of a registered page; its module is imported only when the page is shown."""

    def render() -> None:
        info.renderer()(root)

    return st.Page(render, title=info.title, icon=info.icon, url_path=info.url_path, default=default)


def main() -> None:
    """Configure the page and run the selected page of the registry's navigation."""
    root = runs_root()
    st.set_page_config(page_title="t2i-audit dashboard", page_icon=FAVICON, layout="wide")
    pages, problems = load_pages()
    for problem in problems:
        st.sidebar.warning(escape_markdown(problem), icon=":material/extension_off:")
    st.navigation([_page(info, root, i == 0) for i, info in enumerate(pages)]).run()


if __name__ == "__main__":
    main()
