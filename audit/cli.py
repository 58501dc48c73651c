"""``t2i-audit``: the auditing command line (indexes, memorization, watermark and bias probes).

Each command group lives in its own ``audit/cli_<group>.py`` module with a
``register(subparsers)`` function; this file only assembles them, so the
library modules stay importable with no CLI side effects.
"""

from __future__ import annotations

import argparse
import importlib
import sys

EPILOG = """examples:
  t2i-audit index build shapes-laion:20000 --out indexes/shapes-laion-20k
  t2i-audit index open indexes/shapes-laion-20k
  t2i-audit memorization runs/demo --index indexes/shapes-laion-20k
  t2i-audit watermark runs/demo --index indexes/shapes-laion-20k
"""

#: One module per command group, each with ``register(subparsers)``.
COMMAND_MODULES = ("audit.cli_index", "audit.cli_memorization", "audit.cli_watermark")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="t2i-audit", description="Audit text-to-image runs: training-data copies, watermarks, social bias.",
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="command", required=True)
    version = sub.add_parser("version", help="print the installed t2i-audit version")
    version.set_defaults(func=lambda args: print(__import__("bench").__version__) or 0)
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(sub)
    return parser


def main(argv=None) -> int:
    from bench.cli import run_cli

    return run_cli(build_parser(), argv)


if __name__ == "__main__":
    sys.exit(main())
