"""``make demo``: the main job on the built-in model and the built-in shapes prompt set.

1. renders the world's reference images for the prompts (exact renders of their specs);
2. generates (or resumes) ``<runs>/demo`` at guidance 1, 3 and 7.5;
3. scores it in one feature pass (FD/KID/precision/recall on EfficientNet-Lite0
   features, compositional accuracy by the world's detector, CLIP score with the
   built-in evaluator CLIP when it is installed) and draws the guidance sweep;
4. compares guidance 3 with 7.5 on the same prompts and seeds (``t2i-bench compare``: paired bootstrap,
   significance at 95%) and writes ``<runs>/compare-demo_w3-vs-demo_w7.5``;
5. prints where the run, its summary and the dashboard command are.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from bench.cli import setup_cli_output
from bench.compare import Side, compare_runs, format_table
from bench.compare_plot import save_comparison
from bench.errors import UserError
from bench.models.loader import DEFAULT_MODEL
from bench.prompts import load_prompt_set
from bench.runspec import RunSpec
from bench.score import ScoreSpec
from bench import contract as C
from bench.contract import METRICS, SWEEP, SWEEP_PLOT
from bench.sweep import run_sweep
from bench.world.reference import render_reference

PER_CATEGORY = 2
IMAGES_PER_PROMPT = 2


def builtin_clip_available() -> bool:
    from bench.models.evaluator_clip import DEFAULT_DIR

    return DEFAULT_DIR.is_dir() and any(DEFAULT_DIR.glob("*.safetensors"))


def with_intervals(table):
    """The sweep table for reading: one column per metric, "value [ci_low, ci_high]" (95%)."""
    import pandas as pd

    shown = pd.DataFrame({"guidance": table["guidance"]})
    for column in table.columns:
        if column in ("guidance", "guidance_formulation") or column.endswith(("_ci_low", "_ci_high")):
            continue
        low, high = table.get(f"{column}_ci_low"), table.get(f"{column}_ci_high")
        shown[column] = [f"{v:.3g}" + ("" if low is None or pd.isna(lo) else f" [{lo:.3g}, {hi:.3g}]")
                         for v, lo, hi in zip(table[column], low if low is not None else table[column],
                                              high if high is not None else table[column])]
    return shown


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", default="runs", help="runs root (default ./runs)")
    args = ap.parse_args(argv)
    setup_cli_output()
    runs = Path(args.runs)
    run_dir, ref_dir = runs / "demo", runs / "demo-reference"
    try:
        prompts = load_prompt_set("shapes").subset(per_category=PER_CATEGORY)
        n_ref = render_reference(prompts, ref_dir, images_per_prompt=4)
        spec = RunSpec(out=str(run_dir), model=DEFAULT_MODEL, prompts="shapes", per_category=PER_CATEGORY,
                       guidance=(1.0, 3.0, 7.5), images_per_prompt=IMAGES_PER_PROMPT, steps=20, batch_size=24)
        score = ScoreSpec(run=str(run_dir), reference=str(ref_dir), features=("efficientnet-lite0",),
                          clip="builtin" if builtin_clip_available() else None)
        table = run_sweep(spec, score)
        sides = [Side(run_dir, 3.0), Side(run_dir, 7.5)]
        compared = compare_runs(sides)
        compare_dir = runs / "compare-demo_w3-vs-demo_w7.5"
        save_comparison(compared, sides, compare_dir)
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    summary = C.read_summary(run_dir)
    print()
    print(with_intervals(table).to_string(index=False))
    print("(95% bootstrap intervals; FD and KID with N <= d are flagged above: compare them across scales only)")
    print()
    print(format_table(compared, categories=False))
    print(f"compare  : {compare_dir / C.COMPARE}  plot: {compare_dir / C.COMPARE_PLOT}"
          f"   (same as: t2i-bench compare {run_dir}@3 {run_dir}@7.5)")
    print()
    print(f"model    : {DEFAULT_MODEL}" + (" (tiny random pipeline: its images are noise until the built-in world model ships)"
                                           if DEFAULT_MODEL.endswith("tiny-random") else ""))
    print(f"reference: {ref_dir}  ({n_ref} exact renders of the prompts' specs)")
    print(f"run      : {run_dir}  ({summary['n_images']} images)")
    print(f"summary  : {run_dir / C.SUMMARY}")
    print(f"metrics  : {run_dir / METRICS}  sweep: {run_dir / SWEEP}  plot: {run_dir / SWEEP_PLOT}")
    print(f"dashboard: .venv/bin/t2i-dashboard --runs {args.runs}   (or: make dashboard)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
