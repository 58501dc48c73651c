"""``make demo``, audit half: the built-in world's training-data and watermark audits.

Runs after ``bench.demo`` (which made ``<runs>/demo``):

1. builds (or reopens) a LAION-style index of a shapes-laion subset with the
   built-in evaluator CLIP, in clip-retrieval's layout (``<runs>/demo-index``);
2. generates (or resumes) ``<runs>/demo-audit``: the ``shapes-audit`` prompt
   set (iconic captions of the planted duplicates, fresh captions, the
   "stock photo of" cue with and without it, role words) on the built-in model;
3. runs every registered audit probe (``audit.probes.PROBES``: memorization,
   watermark, and any plugin) on both runs and prints the headline numbers.

Every step reuses what an earlier run of the demo left, so a second run is fast.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from bench import contract as C
from bench.cli import setup_cli_output
from bench.errors import UserError
from bench.generate import generate
from bench.models.loader import DEFAULT_MODEL
from bench.runspec import RunSpec

INDEX_SOURCE = "shapes-laion:20000"
AUDIT_IMAGES_PER_PROMPT = 2


def ensure_index(folder: Path):
    """Open the demo index, building it first when it is not there."""
    from audit.index import ClipIndex, build_index, is_index_folder
    from bench.features import get_extractor
    from bench.score import clip_extractor_spec

    if is_index_folder(folder):
        return ClipIndex.open(folder)
    print(f"building the index {folder} from {INDEX_SOURCE} (embedding with the built-in evaluator CLIP)")
    return build_index(INDEX_SOURCE, folder, get_extractor(clip_extractor_spec("builtin")))


def audit_run(run: Path, index) -> dict:
    """Every registered probe on ``run`` (each gets the demo index as its ``index`` option); the summary."""
    from audit.probes import PROBES

    for name in PROBES.names():
        PROBES.get(name)(run, {"index": index})
    return C.read_summary(run)


def copy_rates_by_category(run: Path) -> dict[str, float]:
    prompts = C.read_table(run, C.MEMORIZATION_PROMPTS_TABLE)
    by_cat = prompts.groupby("category")[["n_copies", "n_images"]].sum()
    return {cat: row.n_copies / row.n_images for cat, row in by_cat.iterrows() if row.n_images}


def visible_rates_by_category(run: Path) -> dict[str, float]:
    table = C.read_table(run, C.WATERMARK_TABLE)
    return table.groupby("category")["visible"].apply(lambda v: v.astype(bool).mean()).to_dict()


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", default="runs", help="runs root (default ./runs)")
    args = ap.parse_args(argv)
    setup_cli_output()
    runs = Path(args.runs)
    demo_run, audit_dir, index_dir = runs / "demo", runs / "demo-audit", runs / "demo-index"
    try:
        if not (demo_run / C.SAMPLES).is_file():
            raise UserError(f"{demo_run} has no images yet: run `python -m bench.demo --runs {runs}` first")
        index = ensure_index(index_dir)
        spec = RunSpec(out=str(audit_dir), model=DEFAULT_MODEL, prompts="shapes-audit", guidance=(7.5,),
                       images_per_prompt=AUDIT_IMAGES_PER_PROMPT, steps=20, batch_size=24)
        generate(spec)
        summaries = {run: audit_run(run, index) for run in (demo_run, audit_dir)}
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    print()
    print(f"index    : {index_dir}  ({index.n} images of {INDEX_SOURCE}, d={index.dim})")
    for run, summary in summaries.items():
        for name, probe in summary.get(C.AUDITS_KEY, {}).items():
            if name not in ("memorization", "watermark"):  # the built-in probes get their own line below
                print(f"{run}: {probe['display_name']}: {probe['headline']} "
                      f"{summary.get(probe['summary_key'], {}).get(probe['headline'])}")
        mem, wm = summary["memorization"], summary["watermark"]
        invisible = ("not checkable (images under 256 px)" if wm["invisible_rate"] is None
                     else f"{wm['invisible_rate']:.3f}")
        print(f"{run}: copy rate {mem['copy_rate']:.3f} ({mem['n_copies']}/{mem['n_images']}), "
              f"visible watermark rate {wm['visible_rate']:.3f}, invisible watermark rate {invisible}")
    copies = copy_rates_by_category(audit_dir)
    visible = visible_rates_by_category(audit_dir)
    print("  copy rate by category     : " + ", ".join(f"{c} {v:.2f}" for c, v in sorted(copies.items())))
    print("  visible watermark by cat. : " + ", ".join(f"{c} {v:.2f}" for c, v in sorted(visible.items())))
    print("outputs  : <run>/audit/memorization.parquet, memorization_prompts.parquet, watermark.parquet, neighbours/")
    print(f"dashboard: .venv/bin/t2i-dashboard --runs {args.runs}   (Memorization page)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
