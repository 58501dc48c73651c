"""``t2i-audit watermark RUN``: visible and invisible watermarks in a run's images."""

from __future__ import annotations

import argparse

from audit.watermark import DEFAULT_K, DEFAULT_PROBE_FEATURES, PROBE_ON_CLIP
from audit.watermark_probe import ProbeConfig

EPILOG = f"""examples:
  # the built-in world: the probe (on {DEFAULT_PROBE_FEATURES} features) is trained on first use, then cached
  t2i-audit watermark runs/demo
  # the probe on the CLIP's own embeddings instead (any CLIP backbone)
  t2i-audit watermark runs/demo --probe-features {PROBE_ON_CLIP}
  # plus the mean pwatermark of each image's {DEFAULT_K} nearest indexed training images
  t2i-audit index build shapes-laion:20000 --out indexes/shapes-laion-20k
  t2i-audit watermark runs/demo --index indexes/shapes-laion-20k
  # real photos: train the probe on a folder of clean images, or load a saved probe
  t2i-audit watermark runs/sd21 --probe-images photos/
  t2i-audit watermark runs/sd21 --clip ViT-B-32@laion2b_s34b_b79k --probe-features clip --probe probes/vitb32.safetensors

Writes RUN/audit/watermark.parquet (visible_score, visible, neighbour_pwatermark,
invisible, invisible_message per image) and summary.json["watermark"].  The visible
probe is logistic regression on frozen image features (EfficientNet-Lite0 by default,
as LAION's EfficientNet watermark detector; or the CLIP) trained on synthetic overlays; the
invisible check decodes the dwtDct messages of SD 1.x/2.x scripts and SDXL (images of
256x256 px or more). Calibration: docs/audit-calibration.md.
"""


def _run(args: argparse.Namespace) -> int:
    from audit.watermark import audit_watermark

    config = ProbeConfig(source=args.probe_images or ProbeConfig.source, n_base=args.probe_n,
                         planted=args.probe_planted)
    result = audit_watermark(args.run, clip=args.clip, index=args.index, k=args.k, probe=args.probe,
                             probe_features=args.probe_features, config=config, invisible=not args.no_invisible,
                             batch_size=args.batch_size, progress=not args.no_progress)
    s = result.summary
    train = result.probe.info.get("training", {})
    print(f"probe: {result.probe_source} {s['probe']} (threshold {s['threshold']:.3f}, "
          f"validation AUROC {train.get('val_auroc', float('nan')):.3f})")
    print(f"visible watermark: {int(result.table['visible'].sum())} of {s['n_images']} images "
          f"(rate {s['visible_rate']:.3f})")
    if s["n_invisible_checkable"]:
        print(f"invisible watermark: {int(result.table['invisible'].sum())} of {s['n_invisible_checkable']} "
              f"checkable images (rate {s['invisible_rate']:.3f})")
    else:
        print("invisible watermark: no image is large enough to check (the decoder needs 256x256 px)")
    if s["neighbour_pwatermark_mean"] is not None:
        print(f"neighbours: mean pwatermark {s['neighbour_pwatermark_mean']:.3f} (top-{s['k']})")
    if s["n_skipped"]:
        print(f"skipped: {s['n_skipped']} unreadable image(s)")
    print(f"wrote {args.run}/audit/watermark.parquet and summary.json[\"watermark\"]")
    return 0


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "watermark", help="score a run's images for visible and invisible watermarks",
        description="A visible-watermark probe on image features, the pwatermark of retrieved training "
                    "neighbours, and the invisible dwtDct marks of Stable Diffusion releases.",
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("run", help="run directory (made by t2i-bench generate or import)")
    p.add_argument("--clip", default="builtin",
                   help="CLIP of the index (and of the probe with --probe-features clip): "
                        "'builtin' evaluator CLIP (default) or MODEL@TAG")
    p.add_argument("--probe-features", default=DEFAULT_PROBE_FEATURES,
                   help=f"features the visible-watermark probe reads: {DEFAULT_PROBE_FEATURES} (default), "
                        f"'{PROBE_ON_CLIP}' (the --clip CLIP) or any extractor spec")
    p.add_argument("--index", help="index folder for the neighbours' pwatermark (made with the same CLIP)")
    p.add_argument("--k", type=int, default=DEFAULT_K, help=f"neighbours per image (default {DEFAULT_K})")
    p.add_argument("--probe", help="a saved probe (.safetensors + .json) for these probe features, instead of the cached one")
    p.add_argument("--probe-images",
                   help="train the probe on this folder of clean images (default: shapes-world renders)")
    p.add_argument("--probe-n", type=int, default=ProbeConfig.n_base,
                   help=f"base images to train the probe on (default {ProbeConfig.n_base})")
    p.add_argument("--probe-planted", type=int, default=ProbeConfig.planted,
                   help="shapes world only: also train on N corpus images with its planted watermark")
    p.add_argument("--no-invisible", action="store_true", help="skip the invisible-watermark decoder")
    p.add_argument("--batch-size", type=int, default=64, help="feature extraction batch size")
    p.add_argument("--no-progress", action="store_true", help="hide the progress bars")
    p.set_defaults(func=_run)
