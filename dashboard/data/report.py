"""The societal-risk report (the Report page): ``RUN/report.html`` and ``RUN/report.md``.

``t2i-audit report RUN`` writes a self-contained ``report.html`` (inline CSS,
images as base64 data URLs; user text escaped).  The page shows it in an
iframe, and ``sandboxed`` makes sure nothing in it runs or loads: Streamlit's
iframes allow scripts and same-origin access to the app, so the document gets a
Content-Security-Policy as its first element that forbids every script (inline
ones and event handlers too), every fetch and form, and allows only inline
styles and ``data:`` images and fonts.  The frame keeps the report's CSS apart
from the app's.
"""

from __future__ import annotations

import re
from pathlib import Path

from bench import contract as C
from dashboard.data.reading import resolve_image

HTML_FILE = C.REPORT_HTML
MD_FILE = C.REPORT_MD
#: What a report may use: inline styles, data: images and fonts.  No script, no request.
CSP = ("default-src 'none'; img-src data:; style-src 'unsafe-inline'; font-src data:; base-uri 'none'; "
       "form-action 'none'")  # fmt: skip
CSP_META = f'<meta http-equiv="Content-Security-Policy" content="{CSP}">'
# The doctype (after any leading comments) must stay first, or the report would render in quirks mode.
_DOCTYPE = re.compile(r"\A(\s*(?:<!--.*?-->\s*)*<!doctype[^>]*>)", re.IGNORECASE | re.DOTALL)


def report_path(run_dir: Path, name: str = HTML_FILE) -> tuple[Path | None, str | None]:
    """The report file ``name`` of the run, or ``(None, error)``: missing, or (a link) outside the run."""
    path = resolve_image(run_dir, name)
    if path is None:
        return None, f"{name} points outside the run directory; the dashboard shows run files only"
    if not path.is_file():
        return None, f"{name} is missing (the report has not been made yet)"
    return path, None


def load_report(run_dir: Path) -> tuple[str | None, str | None]:
    """The text of ``report.html``; ``(text, None)`` or ``(None, error)`` with one line."""
    path, error = report_path(run_dir)
    if path is None:
        return None, error
    try:
        return path.read_text(encoding="utf-8"), None
    except UnicodeDecodeError as exc:
        return None, f"{HTML_FILE} is not UTF-8 text (byte {exc.start}); make the report again"
    except OSError as exc:
        return None, f"{HTML_FILE} cannot be read: {exc.strerror or exc}"


def sandboxed(document: str) -> str:
    """``document`` with ``CSP_META`` as its first element (after the doctype), so that the browser
    runs none of its scripts and makes no request, whatever it holds.

    A ``<meta>`` before ``<html>`` opens the head, where a policy takes effect before
    anything else is parsed; a report's own ``<head>`` tag is then merged into it.
    """
    match = _DOCTYPE.match(document)
    at = match.end() if match else 0
    return document[:at] + CSP_META + document[at:]


def is_stale(run_dir: Path) -> bool:
    """True when summary.json changed after report.html was written (the report may be out of date)."""
    report, summary = Path(run_dir) / HTML_FILE, Path(run_dir) / C.SUMMARY
    try:
        return summary.stat().st_mtime_ns > report.stat().st_mtime_ns
    except OSError:
        return False
