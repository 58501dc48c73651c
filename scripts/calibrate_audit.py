#!/usr/bin/env python3
"""Calibrate the audit probes on the built-in shapes world, where the right answers are known.

A thin command line over ``audit.calibration`` (the library: what each probe's
calibration measures, how the thresholds are chosen, where each constant comes
from).  Each probe's figures are written to
``docs/audit-calibration/<probe>-<tag>.json`` (committed, so that calibrating
one probe again keeps the others' figures); every such file present is then
turned into ``docs/audit-calibration.md``.  Runs and indexes go to
``build/calibration/``.  ``--simulate`` replaces the generator by renders of
the prompts' scene specs with generator-like perturbations
(``audit.calibration.simulate``); the document labels those figures as simulated.

Examples:
    python scripts/calibrate_audit.py --simulate
    python scripts/calibrate_audit.py --model builtin:tiny-random --samples 1 --steps 2
    python scripts/calibrate_audit.py --model builtin:shapes-ldm --index build/calibration/index-shapes-laion-20000
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:  # runnable from a checkout without installing
    sys.path.insert(0, str(REPO))

from audit.calibration import (CALIBRATIONS, CalibrationConfig, CalibrationPaths, GeneratorSettings,  # noqa: E402
                               MemorizationSettings, run_calibration, write_doc)
from bench.cli import run_cli  # noqa: E402

DEFAULTS = CalibrationPaths.under(REPO)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], epilog=__doc__.split("Examples:\n", 1)[1],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--probe", action="append", choices=list(CALIBRATIONS), help="probe(s) to calibrate (default: all)")
    parser.add_argument("--model", default="builtin:shapes-ldm", help="generator (default builtin:shapes-ldm)")
    parser.add_argument("--simulate", action="store_true", help="simulated generations instead of a model")
    parser.add_argument("--index", type=Path, help="existing index folder (default: build one from --index-source)")
    parser.add_argument("--index-source", default="shapes-laion:2000", help="index source when building (default shapes-laion:2000)")
    parser.add_argument("--samples", type=int, default=8, help="samples per prompt and split (default 8)")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--guidance", type=float, default=7.5)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--k", type=int, default=None, help="CLIP candidates per image (default: the audit's)")
    parser.add_argument("--out", type=Path, default=DEFAULTS.out,
                        help=f"results, runs and index (default {DEFAULTS.out.relative_to(REPO)})")
    parser.add_argument("--doc", type=Path, default=DEFAULTS.doc,
                        help=f"document to write (default {DEFAULTS.doc.relative_to(REPO)})")
    parser.add_argument("--results", type=Path, default=DEFAULTS.results,
                        help=f"folder of the result JSON files the document is made from "
                             f"(default {DEFAULTS.results.relative_to(REPO)})")
    parser.add_argument("--no-progress", action="store_true")
    parser.set_defaults(func=calibrate)
    return parser


def config_from_args(args: argparse.Namespace) -> CalibrationConfig:
    return CalibrationConfig(
        paths=CalibrationPaths(out=args.out.resolve(), doc=args.doc.resolve(), results=args.results.resolve(), root=REPO),
        generator=GeneratorSettings(model=args.model, simulate=args.simulate, samples=args.samples, steps=args.steps,
                                    guidance=args.guidance, batch_size=args.batch_size),
        memorization=MemorizationSettings(index=args.index, index_source=args.index_source, k=args.k),
        progress=not args.no_progress,
    )


def calibrate(args: argparse.Namespace) -> int:
    config = config_from_args(args)
    for name in args.probe or list(CALIBRATIONS):
        print(f"wrote {run_calibration(name, config)}")
    print(f"wrote {write_doc(config.paths.results, config.paths.doc)}")
    return 0


def main(argv=None) -> int:
    return run_cli(build_parser(), argv)


if __name__ == "__main__":
    sys.exit(main())
