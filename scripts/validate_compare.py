#!/usr/bin/env python3
"""Validate ``t2i-bench compare``'s significance calls on real generations; write docs/compare-validation.md.

A thin wrapper around ``bench.compare_validation`` (what is measured and why).  It generates (or resumes)
one run of the built-in model, scores it with the built-in evaluator CLIP and the shapes-world detector,
then measures the false-significance rate over pairs of seeds and the power at a known gap.

Example (about 8 minutes on 2 CPU cores):
    python scripts/validate_compare.py --out build/compare-validation/run
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:  # runnable from a checkout without installing
    sys.path.insert(0, str(REPO))

from bench.compare import Side, compare_runs, format_table  # noqa: E402
from bench.compare_validation import Check, guidance_pairs, per_image_scores, seed_pairs, summarise  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default="build/compare-validation/run")
    parser.add_argument("--model", default="builtin:shapes-ldm")
    parser.add_argument("--per-category", type=int, default=4)
    parser.add_argument("--pairs", type=int, default=20, help="seed pairs (2 x pairs images per prompt)")
    parser.add_argument("--low", type=float, default=1.0)
    parser.add_argument("--high", type=float, default=7.5)
    parser.add_argument("--resamples", type=int, default=1000)
    parser.add_argument("--doc", default=str(REPO / "docs" / "compare-validation.md"))
    args = parser.parse_args()

    run = Path(args.out)
    cli = [sys.executable, "-m", "bench.cli"]
    subprocess.run([*cli, "generate", "--model", args.model, "--prompts", "shapes", "--per-category",
                    str(args.per_category), "--guidance", f"{args.low:g},{args.high:g}", "--images-per-prompt",
                    str(2 * args.pairs), "--out", str(run), "--no-progress"], check=True)
    if not (run / "image_scores.parquet").is_file():
        subprocess.run([*cli, "score", str(run), "--features", "", "--clip", "builtin", "--no-progress"], check=True)
    scores = per_image_scores(run)
    n_prompts = scores.prompt_id.nunique()

    same = summarise(seed_pairs(scores, args.resamples, 0), "same model, different seeds (both scales)")
    gap = summarise(guidance_pairs(scores, args.low, args.high, args.resamples, 0),
                    f"guidance {args.low:g} vs {args.high:g}, one image per prompt")
    whole = compare_runs([Side(run, args.low), Side(run, args.high)], resamples=args.resamples, set_metrics=False)
    overall = whole.table[whole.table.subset == "all"]

    lines = ["# Validation of `t2i-bench compare` on generations", "",
             f"Made by `python scripts/validate_compare.py --out {args.out} --pairs {args.pairs} "
             f"--per-category {args.per_category}`: "
             f"`{args.model}`, {n_prompts} `shapes` prompts, {2 * args.pairs} images per prompt at guidance "
             f"{args.low:g} and {args.high:g}, scored by the built-in evaluator CLIP and the shapes-world detector. "
             "The test is the paired percentile bootstrap over shared prompts of `bench.compare` "
             f"({args.resamples} resamples); intervals of rates are Wilson 95%.", "",
             "| check | metric | tests | significant | rate | 95% interval | expected |", "|---|---|---|---|---|---|---|"]
    pooled = Check("all", same[0].what, sum(c.n_tests for c in same), sum(c.n_significant for c in same))
    for check, expected in [(c, "≈ 0.05") for c in [*same, pooled]] + [(c, "high (power)") for c in gap]:
        lo, hi = check.interval
        lines.append(f"| {check.what} | {check.metric} | {check.n_tests} | {check.n_significant} | "
                     f"{check.rate:.3f} | [{lo:.3f}, {hi:.3f}] | {expected} |")
    lines += ["", f"Whole runs, guidance {args.low:g} against {args.high:g} ({2 * args.pairs} images per prompt):",
              "", "| metric | A | B | delta | 95% interval | significant |", "|---|---|---|---|---|---|"]
    for r in overall.itertuples():
        lines.append(f"| {r.metric} | {r.value_a:.4g} | {r.value_b:.4g} | {r.delta:+.4g} | "
                     f"[{r.ci_low:+.4g}, {r.ci_high:+.4g}] | {'yes' if r.significant else 'no'} |")
    lo, hi = pooled.interval
    missed = [r.metric for r in overall.itertuples() if not r.significant]
    lines += ["", f"- Size: over {pooled.n_tests} independent same-model comparisons the test said \"significant\" "
              f"{pooled.n_significant} times ({pooled.rate:.3f}, 95% interval [{lo:.3f}, {hi:.3f}]); the nominal "
              f"0.05 lies {'inside' if lo <= 0.05 <= hi else 'OUTSIDE'} that interval.",
              f"- Power: guidance {args.low:g} against {args.high:g} over the whole runs is significant on "
              f"{', '.join(r.metric for r in overall.itertuples() if r.significant) or 'no metric'}"
              + (f"; not on {', '.join(missed)}: the model's gap there is the delta above, too small for "
                 f"{n_prompts} prompts (the interval is over prompts, so more prompts, not more seeds, narrow it)."
                 if missed else ".")]
    text = "\n".join(lines) + "\n"
    Path(args.doc).write_text(text)
    print(text)
    print(format_table(whole, categories=False))
    return 0


if __name__ == "__main__":
    sys.exit(main())
