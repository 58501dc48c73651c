#!/usr/bin/env python3
"""Train the default visible-watermark probe head, set its threshold on generations, ship it.

1. trains the probe for the default features (EfficientNet-Lite0) and the default
   settings (``audit.probes.watermark.classifier.default_config``: generations of the built-in
   generator from shapes-laion train captions, labelled by the world's exact detector; with
   ``--probe-n N`` also N synthetic pairs through the generator's VAE);
2. generates ``shapes-audit`` (every category) with ``--model`` on the calibration and
   the evaluation seed (``audit.calibration.config.SPLIT_SEEDS``; runs under
   ``--out``/watermark-<tag>/, resumed when present) and sets the head's threshold to the one
   with the most calibration-seed images agreeing with the exact detector
   (``audit.calibration.watermark.calibrate_on_generations``);
3. writes ``<heads>/<extractor key>__overlays-v<recipe>__<config digest>.safetensors`` and its
   ``.json`` (training recipe and figures, where the threshold was measured, the evaluation
   seed's per-category figures), and removes the other heads for these features in ``<heads>``
   (the head it replaces).

Then ``python scripts/calibrate_audit.py --probe watermark`` measures the shipped head again
and writes docs/audit-calibration.md.  Other probe settings are trained on first use by
``t2i-audit watermark RUN --probe-n ... --probe-vae ...`` (cached, Youden threshold on synthetic
validation pairs).

Examples:
    python scripts/train_watermark_head.py
    python scripts/train_watermark_head.py --model builtin:tiny-random --probe-n 20 --probe-generated 0 --samples 1 --steps 2 --heads /tmp/heads
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import replace
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:  # runnable from a checkout without installing
    sys.path.insert(0, str(REPO))

from audit.calibration import CalibrationConfig, CalibrationPaths, GeneratorSettings  # noqa: E402
from audit.probes.watermark.classifier import DEFAULT_GENERATED, SHIPPED_HEADS, ProbeConfig, default_config  # noqa: E402
from bench.cli import run_cli  # noqa: E402

DEFAULTS = CalibrationPaths.under(REPO)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], epilog=__doc__.split("Examples:\n", 1)[1],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="builtin:shapes-ldm", help="generator of the calibration images")
    parser.add_argument("--samples", type=int, default=8,
                        help="images per category and seed = samples x 24 (default 8: 192)")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--guidance", type=float, default=7.5)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--probe-n", type=int, default=default_config().n_base,
                        help="synthetic pairs to train on as well, through the built-in VAE (default "
                             f"{default_config().n_base}; another value is another head)")
    parser.add_argument("--probe-generated", type=int, default=DEFAULT_GENERATED,
                        help=f"generations in the training set (default {DEFAULT_GENERATED}; another value is another head)")
    parser.add_argument("--out", type=Path, default=DEFAULTS.out, help="where the generated runs go")
    parser.add_argument("--heads", type=Path, default=SHIPPED_HEADS, help="folder to write the head to (default: the package's)")
    parser.add_argument("--no-progress", action="store_true")
    parser.set_defaults(func=ship)
    return parser


def ship(args: argparse.Namespace) -> int:
    from audit.calibration.watermark import calibrate_on_generations
    from audit.probes.watermark.classifier import WatermarkProbe, probe_cache_path, train_probe
    from audit.probes.watermark.run import DEFAULT_PROBE_FEATURES
    from bench.features import get_extractor

    config = CalibrationConfig(
        paths=replace(DEFAULTS, out=args.out.resolve()),
        generator=GeneratorSettings(model=args.model, samples=args.samples, steps=args.steps, guidance=args.guidance,
                                    batch_size=args.batch_size),
        progress=not args.no_progress)
    probe_config = default_config(n_base=args.probe_n, generated=args.probe_generated,
                                  **({"vae": ProbeConfig.vae} if args.probe_n else {}))
    extractor = get_extractor(DEFAULT_PROBE_FEATURES)
    started = time.perf_counter()
    probe = train_probe(extractor, probe_config, progress=config.progress)
    print(f"trained in {probe.info['training']['seconds']:.0f} s: validation AUROC {probe.info['training']['val_auroc']}")
    tag = Path(args.model).name.replace(":", "-")
    g = calibrate_on_generations(probe, extractor, config, tag)
    ev, cal = g["splits"]["evaluation"], g["splits"]["calibration"]
    info = {**probe.info,
            "threshold_source": (f"chosen on {cal['all']['n']} generations of {g['model']} (shapes-audit, every "
                                 f"category, seed {g['seeds']['calibration']}, {g['steps']} steps, guidance "
                                 f"{g['guidance']}) by {g['rule']}; truth: {g['truth']}"),
            "calibration": {k: v for k, v in g.items()
                            if k not in ("splits", "probe_threshold", "evaluation_at_probe_threshold")}
            | {"evaluation": {"auroc": ev["auroc"], "agreement": ev["agreement"],
                              "max_abs_diff_pp": ev["max_abs_diff_pp"],
                              "by_category": {c: {k: f[k] for k in ("n", "truth_rate", "probe_rate", "diff_pp")}
                                              for c, f in ev["by_category"].items()}},
               "calibration_auroc": cal["auroc"],
               "seconds_total": round(time.perf_counter() - started, 1)}}
    shipped = WatermarkProbe(probe.weight, probe.bias, g["threshold"], probe.extractor_key, info)
    path = probe_cache_path(extractor.key, probe_config, args.heads)
    path.parent.mkdir(parents=True, exist_ok=True)
    shipped.save(path)
    for old in sorted(args.heads.glob(f"{extractor.key}__*")):
        if old.with_suffix("") != path.with_suffix(""):
            old.unlink()
            print(f"removed {old}")
    print(f"threshold {g['threshold']:.4f} (Youden on the validation fifth: {probe.threshold:.4f}); evaluation seed: "
          f"AUROC {ev['auroc']}, largest |probe - truth| {ev['max_abs_diff_pp']:.2f} pp")
    for cat, f in ev["by_category"].items():
        print(f"  {cat:10s} n={f['n']:4d} truth {f['truth_rate']:.3f} probe {f['probe_rate']:.3f} ({f['diff_pp']:+.2f} pp)")
    print(f"wrote {path} and {path.with_suffix('.json').name}")
    return 0


def main(argv=None) -> int:
    return run_cli(build_parser(), argv)


if __name__ == "__main__":
    sys.exit(main())
