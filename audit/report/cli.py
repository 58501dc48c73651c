"""``t2i-audit report RUN [--compare RUN ...] [--out FILE]``: write the societal-risk report.

Writes RUN/report.html (one self-contained file) and RUN/report.md, or FILE and the
.md beside it.  Bad input (a missing run, a folder that is not a run, an --out that
cannot be written) is one ``error:`` line with exit code 2, and nothing is written.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from bench import contract as C
from bench.errors import UserError

EPILOG = """examples:
  t2i-audit report runs/demo-audit                    # runs/demo-audit/report.html and report.md
  t2i-audit report runs/sd21 --compare runs/sd15 runs/sdxl   # every figure beside the other runs'
  t2i-audit report runs/demo-audit --out reports/demo.html   # reports/demo.html and reports/demo.md

Sections: provenance, quality and alignment metrics, then one per audit probe (t2i-audit probes);
a probe not run on a run shows 'not run' with the command that runs it.
"""


def register(subparsers) -> None:
    p = subparsers.add_parser("report", help="write the societal-risk report of a run (report.html, report.md)",
                              description="The societal-risk report of a run: provenance, metrics and every audit "
                                          "probe, as one self-contained HTML file and as markdown.",
                              epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("run", help="run directory (made by t2i-bench generate or import)")
    p.add_argument("--compare", nargs="+", action="extend", default=[], metavar="RUN",
                   help="other run directories to set beside RUN (differences are RUN minus each)")
    p.add_argument("--out", metavar="FILE", help=f"the HTML file to write (default RUN/{C.REPORT_HTML}); "
                                                 f"the markdown goes beside it with the suffix .md")
    p.set_defaults(func=run_report)


def output_paths(run: Path, out: str | None) -> tuple[Path, Path]:
    """(html, md) for the report, checked writable before anything is built; UserError otherwise."""
    html = Path(out) if out else run / C.REPORT_HTML
    if out:
        if html.suffix.lower() == ".md":
            raise UserError(f"--out names the HTML file (the markdown is written beside it): got '{out}'")
        if html.is_dir():
            raise UserError(f"--out '{out}' is a directory; name the HTML file, e.g. {html / C.REPORT_HTML}")
    md = html.with_suffix(".md") if out else run / C.REPORT_MD
    folder = html.parent
    existing = folder
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        raise UserError(f"cannot write the report to '{html}': '{existing}' is not a folder")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise UserError(f"cannot write the report to '{html}': '{existing}' is not writable; choose another --out")
    for path in (html, md):
        if path.exists() and (path.is_dir() or not os.access(path, os.W_OK) and not os.access(folder, os.W_OK)):
            raise UserError(f"cannot write the report to '{path}': it exists and cannot be replaced")
    return html, md


def run_report(args: argparse.Namespace) -> int:
    from audit.report.build import build_report, check_run
    from audit.report.render import write_report

    run = check_run(args.run)
    for other in args.compare:
        check_run(other, "--compare run")
    html, md = output_paths(run, args.out)
    report = build_report(run, args.compare)
    try:
        write_report(report, html, md)
    except OSError as exc:
        raise UserError(f"cannot write the report to '{html}': {exc.strerror or exc}; choose another --out") from exc
    for group in report.groups:
        states = ", ".join("ok" if s.ran else "not run" for s in group.sections)
        print(f"  {group.title}: {states}")
    print(f"wrote {html} and {md}")
    return 0
