"""The societal-risk report of a run: ``t2i-audit report RUN [--compare RUN ...] [--out FILE]``.

``build`` collects the sections (provenance, quality and alignment metrics, one per
audit probe of ``audit.probes.PROBES`` from its ``report_section`` hook or its
declared info, limitations), ``render`` writes them as one self-contained HTML file
(Jinja2, autoescaped, images inline) and as markdown.  ``section`` is what a probe's
hook returns; ``sections`` holds the hooks of the built-in probes.

    from audit.report import build_report, write_report
    write_report(build_report("runs/demo"), "runs/demo/report.html")
"""

from audit.report.build import Report, SectionGroup, build_report
from audit.report.render import render_html, render_markdown, write_report
from audit.report.section import (CountsBlock, Figure, Headline, ImagePair, ReportSection, TableBlock,
                                  Thumbnail)

__all__ = ["CountsBlock", "Figure", "Headline", "ImagePair", "Report", "ReportSection", "SectionGroup",
           "TableBlock", "Thumbnail", "build_report", "render_html", "render_markdown", "write_report"]
