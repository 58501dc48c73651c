"""``t2i-audit memorization RUN --index DIR``: flag generated images that copy an indexed training image."""

from __future__ import annotations

import argparse

from audit.memorization import (DEFAULT_K, DEFAULT_THRESHOLD_COSINE, DEFAULT_THRESHOLD_DISTANCE,
                                NEIGHBOUR_CHOICES)

EPILOG = f"""examples:
  # the built-in world: an index of shapes-laion, then the audit of a run against it
  t2i-audit index build shapes-laion:20000 --out indexes/shapes-laion-20k
  t2i-audit memorization runs/demo --index indexes/shapes-laion-20k
  # stricter copy threshold, more neighbours, every neighbour image saved
  t2i-audit memorization runs/demo --index indexes/shapes-laion-20k --k 10 --threshold-distance 0.05 --neighbours all
  # an index built with another CLIP: name the same CLIP (open_clip MODEL@TAG)
  t2i-audit memorization runs/sd21 --index indexes/laion-subset --clip ViT-B-32@laion2b_s34b_b79k

A (generated image, neighbour) pair is a copy when clip_cosine >= --threshold-cosine
(default {DEFAULT_THRESHOLD_COSINE}) and the tiled-L2 copy distance <= --threshold-distance
(default {DEFAULT_THRESHOLD_DISTANCE}); defaults calibrated in docs/audit-calibration.md.
Writes RUN/audit/memorization.parquet, RUN/audit/memorization_prompts.parquet,
RUN/audit/neighbours/*.png and summary.json["memorization"].
"""


def _run(args: argparse.Namespace) -> int:
    from audit.memorization import audit_memorization

    result = audit_memorization(
        args.run, args.index, clip=args.clip, k=args.k, threshold_cosine=args.threshold_cosine,
        threshold_distance=args.threshold_distance, neighbours=args.neighbours,
        batch_size=args.batch_size, progress=not args.no_progress,
    )
    s = result.summary
    print(f"memorization: {s['n_copies']} of {s['n_images']} images copy an indexed image "
          f"(copy rate {s['copy_rate']:.3f}; {s['method']})")
    top = result.prompts.sort_values(["copy_rate", "prompt_id"], ascending=[False, True]).head(5)
    for row in top[top.n_copies > 0].itertuples():
        print(f"  {row.prompt_id}: {row.n_copies}/{row.n_images}  {row.prompt[:70]}")
    print(f"wrote {args.run}/audit/memorization.parquet, memorization_prompts.parquet, neighbours/")
    return 0


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "memorization", help="find generated images that copy training images of a CLIP index",
        description="kNN candidates by CLIP cosine from a clip-retrieval-style index, confirmed by "
                    "Carlini et al.'s tiled L2 (max over a 4x4 grid of per-tile RMS distances).",
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("run", help="run directory (made by t2i-bench generate or import)")
    p.add_argument("--index", required=True, help="index folder (t2i-audit index build, or clip-retrieval's layout)")
    p.add_argument("--clip", default="builtin",
                   help="the CLIP that embeds the run; must be the index's (default: builtin evaluator CLIP)")
    p.add_argument("--k", type=int, default=DEFAULT_K, help=f"neighbours per image (default {DEFAULT_K})")
    p.add_argument("--threshold-cosine", type=float, default=DEFAULT_THRESHOLD_COSINE)
    p.add_argument("--threshold-distance", type=float, default=DEFAULT_THRESHOLD_DISTANCE)
    p.add_argument("--neighbours", choices=NEIGHBOUR_CHOICES, default="top1",
                   help="neighbour images to save: top1 (+ every copy, default), copies, all")
    p.add_argument("--batch-size", type=int, default=64, help="feature extraction batch size")
    p.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    p.set_defaults(func=_run)
