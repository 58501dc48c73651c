"""``t2i-audit watermark RUN``: visible and invisible watermarks in a run's images.

The probe's entry point (``run_probe``), its options and its report; ``audit.cli`` makes the command."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any, Mapping

from bench import contract as C

from audit.probes.watermark.run import DEFAULT_K, DEFAULT_PROBE_FEATURES, PROBE_ON_CLIP
from audit.probes.watermark.classifier import DEFAULT_GENERATED, ProbeConfig, default_config

EPILOG = f"""examples:
  # the built-in world: the default probe head (on {DEFAULT_PROBE_FEATURES} features) ships with the package
  t2i-audit watermark runs/demo
  # the probe on the CLIP's own embeddings instead (any CLIP backbone)
  t2i-audit watermark runs/demo --probe-features {PROBE_ON_CLIP}
  # plus the mean pwatermark of each image's {DEFAULT_K} nearest indexed training images
  t2i-audit index build shapes-laion:20000 --out indexes/shapes-laion-20k
  t2i-audit watermark runs/demo --index indexes/shapes-laion-20k
  # real photos: train the probe on a folder of clean images, or load a saved probe
  t2i-audit watermark runs/sd21 --probe-images photos/ --probe-vae stabilityai/stable-diffusion-2-1
  t2i-audit watermark runs/sd21 --clip ViT-B-32@laion2b_s34b_b79k --probe-features clip --probe probes/vitb32.safetensors
  # LAION's own detector (the one behind LAION-5B's pwatermark): converted to safetensors once
  t2i-audit watermark runs/sd21 --probe-file watermark_model_v1.pt --allow-pickle
  t2i-audit watermark runs/sd21 --probe-file watermark_model_v1.pt

Writes RUN/audit/watermark.parquet (visible_score, visible, neighbour_pwatermark,
invisible, invisible_message per image) and summary.json["watermark"].  The visible
probe is logistic regression on frozen image features (EfficientNet-Lite0 by default,
as LAION's EfficientNet watermark detector; or the CLIP): the shipped head trained on
generations of the built-in generator labelled by the world's exact detector, others on
synthetic overlays (through the generator's VAE for shapes-world renders); the
invisible check decodes the dwtDct messages of SD 1.x/2.x scripts and SDXL (images of
256x256 px or more). Calibration: docs/audit-calibration.md.
"""


def probe_vae(given: str | None, probe_images: str | None) -> str:
    """``ProbeConfig.vae`` from ``--probe-vae``: "none" is off; unset is the built-in generator's VAE
    for shapes-world training and off for a folder of images (a VAE of another world would only blur them)."""
    if given is None:
        return "" if probe_images else ProbeConfig.vae
    return "" if given.strip().lower() in ("", "none") else given


def probe_config(options: Mapping[str, Any]) -> ProbeConfig:
    """The probe settings of the options: the shipped head's (``default_config``) unless a probe
    option is given.  With ``--probe-n`` the probe trains on synthetic pairs (through the built-in VAE
    unless ``--probe-vae none``), with ``--probe-images`` on that folder (no generations)."""
    images, n, generated = options.get("probe_images"), options.get("probe_n"), options.get("probe_generated")
    planted = options.get("probe_planted") or 0
    if images:
        return ProbeConfig(source=images, n_base=ProbeConfig.n_base if n is None else n, planted=planted,
                           vae=probe_vae(options.get("probe_vae"), images), generated=generated or 0)
    shipped = default_config()
    n = shipped.n_base if n is None and not planted else (ProbeConfig.n_base if n is None else n)
    vae = probe_vae(options.get("probe_vae"), None) if n else shipped.vae
    return default_config(n_base=n, planted=planted, vae=vae,
                          generated=shipped.generated if generated is None else generated)


def run_probe(run_dir: Path, options: Mapping[str, Any]) -> dict:
    """The probe's entry point (``ProbeInfo.run``): audit ``run_dir``; returns summary.json["watermark"]."""
    from audit.probes.watermark.run import audit_watermark

    config = probe_config(options)
    result = audit_watermark(run_dir, clip=options.get("clip", "builtin"), index=options.get("index"),
                             k=options.get("k", DEFAULT_K), probe=options.get("probe"),
                             probe_features=options.get("probe_features", DEFAULT_PROBE_FEATURES), config=config,
                             invisible=not options.get("no_invisible", False),
                             batch_size=options.get("batch_size", 64), progress=not options.get("no_progress", False),
                             probe_file=options.get("probe_file"), allow_pickle=options.get("allow_pickle", False))
    train = result.probe.info.get("training", {})
    return {**result.summary, "probe_source": result.probe_source,
            "probe_val_auroc": train.get("val_auroc")}


def report(args: argparse.Namespace, s: dict) -> None:
    """What ``t2i-audit watermark`` prints."""
    auroc = s.get("probe_val_auroc")
    print(f"probe: {s.get('probe_source', '')} {s['probe']} (threshold {s['threshold']:.3f}, "
          f"validation AUROC {float('nan') if auroc is None else auroc:.3f})")
    n_visible = round(s["visible_rate"] * s["n_images"])
    print(f"visible watermark: {n_visible} of {s['n_images']} images (rate {s['visible_rate']:.3f})")
    if s["n_invisible_checkable"]:
        n_invisible = round(s["invisible_rate"] * s["n_invisible_checkable"])
        print(f"invisible watermark: {n_invisible} of {s['n_invisible_checkable']} "
              f"checkable images (rate {s['invisible_rate']:.3f})")
    else:
        print("invisible watermark: no image is large enough to check (the decoder needs 256x256 px)")
    if s["neighbour_pwatermark_mean"] is not None:
        print(f"neighbours: mean pwatermark {s['neighbour_pwatermark_mean']:.3f} (top-{s['k']})")
    if s["n_skipped"]:
        print(f"skipped: {s['n_skipped']} unreadable image(s)")
    print(f"wrote {args.run}/{C.WATERMARK_TABLE.file} and summary.json[\"watermark\"]")


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The options of ``t2i-audit watermark RUN`` (the RUN argument is added by ``audit.cli``)."""
    p.description = ("A visible-watermark probe on image features, the pwatermark of retrieved training "
                     "neighbours, and the invisible dwtDct marks of Stable Diffusion releases.")
    p.epilog = EPILOG
    p.add_argument("--clip", default="builtin",
                   help="CLIP of the index (and of the probe with --probe-features clip): "
                        "'builtin' evaluator CLIP (default) or MODEL@TAG")
    p.add_argument("--probe-features", default=DEFAULT_PROBE_FEATURES,
                   help=f"features the visible-watermark probe reads: {DEFAULT_PROBE_FEATURES} (default), "
                        f"'{PROBE_ON_CLIP}' (the --clip CLIP) or any extractor spec")
    p.add_argument("--index", help="index folder for the neighbours' pwatermark (made with the same CLIP)")
    p.add_argument("--k", type=int, default=DEFAULT_K, help=f"neighbours per image (default {DEFAULT_K})")
    p.add_argument("--probe", help="a saved probe (.safetensors + .json) for these probe features, instead of the cached one")
    p.add_argument("--probe-file", metavar="FILE",
                   help="LAION's watermark detector (LAION-5B-WatermarkDetection watermark_model_v1.pt, or the "
                        ".safetensors made from it) instead of the probe head; flags pwatermark >= 0.5")
    p.add_argument("--allow-pickle", action="store_true",
                   help="with a .pt --probe-file: allow reading the pickle once, to convert it to safetensors")
    p.add_argument("--probe-images",
                   help="train the probe on this folder of clean images (default: shapes-world renders)")
    p.add_argument("--probe-n", type=int,
                   help="train on N synthetic pairs (clean and marked) of base images (default: none for the "
                        f"shipped head's labelled generations; {ProbeConfig.n_base} with --probe-images)")
    p.add_argument("--probe-planted", type=int,
                   help="shapes world only: also train on N corpus images with its planted watermark")
    p.add_argument("--probe-vae", metavar="MODEL",
                   help="when training a probe: pass every training image through MODEL's VAE (encode, decode) so "
                        f"it looks generated; 'none' to skip (default {ProbeConfig.vae} for shapes-world training, "
                        "none with --probe-images)")
    p.add_argument("--probe-generated", type=int, metavar="N",
                   help="shapes world only: also train on N generations of the built-in generator labelled by the "
                        f"world's exact detector (default {DEFAULT_GENERATED}; 0 with --probe-images)")
    p.add_argument("--no-invisible", action="store_true", help="skip the invisible-watermark decoder")
    p.add_argument("--batch-size", type=int, default=64, help="feature extraction batch size")
    p.add_argument("--no-progress", action="store_true", help="hide the progress bars")
