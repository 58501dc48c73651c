#!/usr/bin/env python3
"""Calibrate the index-free memorization score on the built-in world: AUROC of iconic against fresh captions.

A thin command line over ``audit.calibration.memorization_score``; writes
``docs/memorization-score.md``.

Examples:
    python scripts/calibrate_memorization_score.py
    python scripts/calibrate_memorization_score.py --row model:1x1 --row model:5x1 --out build/memscore.md
    python scripts/calibrate_memorization_score.py --model builtin:tiny-random --row model:1x1 --resamples 200
"""

from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:  # runnable from a checkout without installing
    sys.path.insert(0, str(REPO))

from audit.calibration.memorization_score import (DEFAULT_ROWS, MemScoreCalibration,  # noqa: E402
                                                  calibrate_memorization_score, parse_rows, write_markdown)
from bench.cli import run_cli  # noqa: E402


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], epilog=__doc__.split("Examples:\n", 1)[1],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="builtin:shapes-ldm")
    parser.add_argument("--row", action="append", default=[],
                        help="PREDICTION:STEPSxGENERATIONS, repeatable (default: "
                             + ", ".join(f"{p}:{s}x{g}" for p, s, g in DEFAULT_ROWS) + ")")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--resamples", type=int, default=2000, help="bootstrap resamples (default 2000)")
    parser.add_argument("--batch-size", type=int, default=24)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1)")
    parser.add_argument("--out", default=str(REPO / "docs" / "memorization-score.md"))
    parser.set_defaults(func=run)
    return parser


def run(args: argparse.Namespace) -> int:
    import torch

    torch.set_num_threads(args.threads)
    config = MemScoreCalibration(model=args.model, rows=parse_rows(args.row) if args.row else DEFAULT_ROWS,
                                 seed=args.seed, resamples=args.resamples, batch_size=args.batch_size,
                                 device=args.device)
    figures = calibrate_memorization_score(config, progress=True)
    parts = ["python", "scripts/calibrate_memorization_score.py", "--model", args.model]
    parts += [f"--row={r}" for r in args.row]
    parts += [] if args.seed == 0 else ["--seed", str(args.seed)]
    parts += [] if args.resamples == 2000 else ["--resamples", str(args.resamples)]
    path = write_markdown(figures, args.out, " ".join(shlex.quote(a) for a in parts))
    for r in figures["rows"]:
        print(f"{r['prediction']:>8} {r['steps']:>3} steps x {r['generations']} gen: AUROC {r['auroc']:.3f} "
              f"[{r['ci_low']:.3f}, {r['ci_high']:.3f}]")
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(build_parser()))
