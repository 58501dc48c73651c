"""Render a ``Report`` as one self-contained HTML file and as markdown, and write both atomically.

HTML: ``templates/report.html.j2`` through Jinja2 with autoescape on for everything
(prompts, categories, model names, captions are user text); images and charts are
``data:image/png;base64`` URIs and the CSS is inline, so the file fetches nothing and
opens from an email attachment.

Markdown: the same sections as text; every piece of user text is escaped (``|``,
backticks, ``<``, ``>``, and markdown's emphasis and link characters), commands are
code spans fenced by more backticks than they contain; figures and images are named by
their captions (they live in the HTML).
"""

from __future__ import annotations

import base64
import re
from contextlib import ExitStack
from pathlib import Path

import pandas as pd

from audit.report.build import Report
from audit.report.section import TableBlock
from bench.atomic import atomic_path

TEMPLATE = "report.html.j2"
TEMPLATES = Path(__file__).resolve().parent / "templates"


def data_uri(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def _version() -> str:
    try:
        import bench

        return str(bench.__version__)
    except (ImportError, AttributeError):  # pragma: no cover
        return ""


def render_html(report: Report) -> str:
    from jinja2 import Environment, FileSystemLoader, StrictUndefined

    env = Environment(loader=FileSystemLoader(str(TEMPLATES)), autoescape=True, undefined=StrictUndefined,
                      trim_blocks=True, lstrip_blocks=True, keep_trailing_newline=True)
    env.filters["data_uri"] = data_uri
    return env.get_template(TEMPLATE).render(report=report, version=_version())


# -------------------------------------------------------------- markdown

_MD_SPECIAL = re.compile(r"([\\`*_\[<>|])")


def md_escape(text) -> str:
    """User text as markdown that shows as the same text: special characters backslash-escaped, one line."""
    text = " ".join(str("" if text is None else text).split())
    return _MD_SPECIAL.sub(r"\\\1", text)


def md_code(text) -> str:
    """A code span that holds ``text`` whatever backticks it contains (CommonMark: a longer fence)."""
    text = " ".join(str(text).split())
    longest = max((len(m) for m in re.findall(r"`+", text)), default=0)
    fence = "`" * (longest + 1)
    pad = " " if text.startswith("`") or text.endswith("`") or longest else ""
    return f"{fence}{pad}{text}{pad}{fence}"


def md_table(frame: pd.DataFrame) -> list[str]:
    if frame.empty:
        return ["(no rows)"]
    cols = [md_escape(c) or " " for c in frame.columns]
    lines = ["| " + " | ".join(cols) + " |", "|" + "|".join("---" for _ in cols) + "|"]
    for row in frame.itertuples(index=False):
        lines.append("| " + " | ".join(md_escape(v) for v in row) + " |")
    return lines


def _md_block(block: TableBlock) -> list[str]:
    caption = md_escape(block.caption)
    if block.total_rows is not None and block.total_rows > len(block.frame):
        caption += f" (first {len(block.frame)} of {block.total_rows} rows)"
    return [f"*{caption}*", "", *md_table(block.frame), ""]


def render_markdown(report: Report) -> str:
    out = [f"# {md_escape(report.title)}", ""]
    runs = "; ".join(f"{md_escape(r.label)} (model {md_escape(r.model)}, {md_code(r.path)})" for r in report.runs)
    out += [f"Runs: {runs}. Generated {md_escape(report.created)} by t2i-audit {md_escape(_version())}. "
            "Figures and images are in report.html.", "", "## Contents", ""]
    for i, g in enumerate(report.groups, 1):
        status = "" if g.any_ran or g.key == "limitations" else " (not run)"
        out.append(f"{i}. [{md_escape(g.title)}](#{g.key}){status}")
    out.append("")
    compare = len(report.runs) > 1
    for i, g in enumerate(report.groups, 1):
        out += [f'<a id="{g.key}"></a>', "", f"## {i}. {md_escape(g.title)}", ""]
        if g.description:
            out += [md_escape(g.description), ""]
        if g.key == "limitations":
            for title, lines in report.limitations:
                out += [f"**{md_escape(title)}**", ""] + [f"- {md_escape(line)}" for line in lines] + [""]
        if g.headline_table is not None:
            out += _md_block(g.headline_table)
        for caption, figs in g.figure_rows:
            where = "" if not compare else " (" + ", ".join(
                md_escape(r.label) for r, f in zip(report.runs, figs) if f is not None) + ")"
            out += [f"*Figure in report.html{where}: {md_escape(caption)}*", ""]
        for f in g.diff_figures:
            out += [f"*Figure in report.html: {md_escape(f.caption)}*", ""]
        for block in g.diff_tables:
            out += _md_block(block)
        for run, s in zip(report.runs, g.sections):
            if compare and (s.has_content or not s.ran):
                out += [f"### {md_escape(run.label)}", ""]
            if not s.ran:
                if compare or run is report.runs[0]:
                    out += [f"**Not run.** Run: {md_code(s.command or '')}", ""]
                    out += [f"> {md_escape(n)}" for n in s.notes] + ([""] if s.notes else [])
                continue
            if s.pairs:
                out += ["Image pairs (generated | training image; thumbnails in report.html):", ""]
                out += [f"- {md_escape(p.caption)}" for p in s.pairs] + [""]
            if s.thumbnails:
                out += ["Images (thumbnails in report.html):", ""]
                out += [f"- {md_escape(t.caption)}" for t in s.thumbnails] + [""]
            for block in s.tables:
                out += _md_block(block)
            out += [f"> {md_escape(n)}" for n in s.notes] + ([""] if s.notes else [])
    return "\n".join(out).rstrip() + "\n"


# ----------------------------------------------------------------- write


def write_report(report: Report, html_path: str | Path, md_path: str | Path | None = None) -> tuple[Path, Path]:
    """Render and write report.html and report.md (beside it by default), each atomically.

    Both are rendered before either is written; the two renames come last, markdown first.
    """
    html_path = Path(html_path)
    md_path = Path(md_path) if md_path is not None else html_path.with_suffix(".md")
    html, md = render_html(report), render_markdown(report)
    with ExitStack() as stack:
        tmp_html = stack.enter_context(atomic_path(html_path))
        tmp_md = stack.enter_context(atomic_path(md_path))
        tmp_html.write_text(html, encoding="utf-8")
        tmp_md.write_text(md, encoding="utf-8")
    return html_path, md_path
