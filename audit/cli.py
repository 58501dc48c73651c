"""``t2i-audit``: the auditing command line (indexes, memorization, watermark and bias probes).

The audit commands arrive with the audit issues; this skeleton already gives the
entry point and its help so that scripts and docs can rely on it.
"""

from __future__ import annotations

import argparse
import sys

EPILOG = """examples:
  t2i-audit --help
  t2i-audit version

Planned (audit issue): t2i-audit index build|open, t2i-audit memorization RUN --index DIR,
t2i-audit watermark RUN.
"""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="t2i-audit", description="Audit text-to-image runs: training-data copies, watermarks, social bias.",
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="command", required=True)
    version = sub.add_parser("version", help="print the installed t2i-audit version")
    version.set_defaults(func=lambda args: print(__import__("bench").__version__) or 0)
    return parser


def main(argv=None) -> int:
    from bench.cli import run_cli

    return run_cli(build_parser(), argv)


if __name__ == "__main__":
    sys.exit(main())
