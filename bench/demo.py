"""``make demo``: the main job on the built-in model and a built-in prompt set.

Generates (or resumes) ``<runs>/demo`` and prints where the run, its summary and
the dashboard command are.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from bench.cli import setup_cli_output
from bench.errors import UserError
from bench.generate import generate
from bench.models.loader import DEFAULT_MODEL
from bench.runspec import RunSpec


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--runs", default="runs", help="runs root (default ./runs)")
    args = ap.parse_args(argv)
    setup_cli_output()
    run_dir = Path(args.runs) / "demo"
    spec = RunSpec(out=str(run_dir), model=DEFAULT_MODEL, prompts="drawbench", per_category=2,
                   guidance=(1.0, 3.0, 7.5), images_per_prompt=2, steps=20, batch_size=16)
    try:
        result = generate(spec)
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    summary = json.loads((run_dir / "summary.json").read_text())
    print()
    print(f"model    : {DEFAULT_MODEL} (tiny random pipeline: its images are noise until the built-in world model ships)")
    print(f"run      : {result.run_dir}  ({result.n_images} images, {result.n_generated} generated now)")
    print(f"summary  : {run_dir / 'summary.json'}  {json.dumps(summary)}")
    print(f"samples  : {run_dir / 'samples.parquet'}")
    print(f"dashboard: .venv/bin/t2i-dashboard --runs {args.runs}   (or: make dashboard)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
