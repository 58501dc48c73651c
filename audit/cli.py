"""``t2i-audit``: the auditing command line (indexes, and one command per audit probe).

``t2i-audit index ...`` comes from ``audit.index.cli``, ``t2i-audit memorization-score``
(index-free, model + prompts, no run needed) from ``audit.probes.memorization.score_cli``; every probe of the
registry ``audit.probes.PROBES`` (built-in or a plugin) becomes both
``t2i-audit NAME RUN`` and ``t2i-audit probe NAME RUN``, with the options its
``add_arguments`` declares.  ``t2i-audit probes`` lists them.  Library modules
stay importable with no CLI side effects.
"""

from __future__ import annotations

import argparse
import sys

EPILOG = """examples:
  t2i-audit index build shapes-laion:20000 --out indexes/shapes-laion-20k
  t2i-audit index open indexes/shapes-laion-20k
  t2i-audit memorization runs/demo --index indexes/shapes-laion-20k
  t2i-audit memorization-score --model builtin:shapes-ldm --prompts shapes-audit --out build/memscore.csv
  t2i-audit watermark runs/demo --index indexes/shapes-laion-20k
  t2i-audit bias runs/roles             # role / profession shares with 95% intervals
  t2i-audit unsafe runs/demo
  t2i-audit report runs/demo            # runs/demo/report.html (self-contained) and report.md
  t2i-audit probes                      # every audit probe, built-in and plugins
"""


def _run_probe(probe):
    def run(args: argparse.Namespace) -> int:
        options = {k: v for k, v in vars(args).items() if k not in ("func", "command", "probe_name")}
        block = probe(args.run, options)
        report = probe.entry("report")
        if report is not None:
            report(args, block)
        else:
            print(f"{probe.display_name}: {probe.headline} {block.get(probe.headline)}")
            print(f"wrote {args.run}/{probe.table} and summary.json[{probe.summary_key!r}]")
        return 0

    return run


#: Commands of t2i-audit itself: a plugin probe cannot take these names.
RESERVED = ("version", "index", "probes", "probe", "report", "memorization-score")


def add_probe_parsers(sub) -> None:
    """One sub-command per registered probe, with the probe's own options."""
    import logging

    from audit.probes import PROBES

    for name in PROBES.names():
        if name in RESERVED:
            logging.getLogger("t2i_audit").warning("audit probe %r (%s) is refused: %r is a t2i-audit command",
                                                   name, PROBES.origin(name), name)
            continue
        probe = PROBES.get(name)
        p = sub.add_parser(name, help=probe.description, description=probe.description,
                           formatter_class=argparse.RawDescriptionHelpFormatter)
        p.add_argument("run", help="run directory (made by t2i-bench generate or import)")
        add_arguments = probe.entry("add_arguments")
        if add_arguments is not None:
            add_arguments(p)
        p.set_defaults(func=_run_probe(probe))


def list_probes(args: argparse.Namespace) -> int:
    from audit.probes import PROBES

    for name in PROBES.names():
        probe = PROBES.get(name)
        print(f"{name:<16} {probe.display_name}  [{PROBES.origin(name)}]  headline: {probe.headline} "
              f"({'higher' if probe.higher_is_better else 'lower'} is better)")
    return 0


def build_parser() -> argparse.ArgumentParser:
    from audit.index.cli import register as register_index
    from audit.probes.memorization.score_cli import register as register_memorization_score
    from audit.report.cli import register as register_report

    from bench.cli import OneLineArgumentParser

    parser = OneLineArgumentParser(
        prog="t2i-audit", description="Audit text-to-image runs: training-data copies, watermarks, social bias.",
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="command", required=True)
    version = sub.add_parser("version", help="print the installed t2i-audit version")
    version.set_defaults(func=lambda args: print(__import__("bench").__version__) or 0)
    register_index(sub)
    register_report(sub)
    register_memorization_score(sub)
    sub.add_parser("probes", help="list the audit probes (built-in and plugins)").set_defaults(func=list_probes)
    probe = sub.add_parser("probe", help="run an audit probe by name: t2i-audit probe NAME RUN ...")
    add_probe_parsers(probe.add_subparsers(dest="probe_name", required=True, metavar="NAME"))
    add_probe_parsers(sub)
    return parser


def main(argv=None) -> int:
    from bench.cli import run_cli

    return run_cli(build_parser(), argv)


if __name__ == "__main__":
    sys.exit(main())
