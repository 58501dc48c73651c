"""Watermark calibration: held-out AUROC of the visible-watermark probe, and watermark reproduction.

Where the probe figures quoted in ``audit/probes/watermark/run.py`` and the
README come from.  The probe (``audit.probes.watermark.classifier``) never
trains on shapes-laion's ``heldout`` split, so that split measures it on the
corpus' own planted PIXSTOCK mark; with a generator, the ``stock_cue`` and
``no_cue`` prompts of ``shapes-audit`` measure how often a generation carries
a watermark, with ``bench.world.detect_watermark`` as the truth.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from audit.calibration.config import PROMPT_SET, SPLIT_SEEDS, CalibrationConfig

#: Clean heldout rows scored (a seeded sample; every marked heldout row, about
#: 1000 of the 100k-row corpus' 10k heldout rows, is scored).
WATERMARK_HELDOUT_CLEAN = 3000
#: Train-split PIXSTOCK rows added to the "synthetic+planted" probe's training set.
WATERMARK_PLANTED = 1000
#: The held-out AUROC the probe is meant to reach (a target, not a measurement).
TARGET_AUROC = 0.95


def heldout_watermark_images():
    """Images and labels of shapes-laion (100k, seed 0) ``heldout`` rows: every row with the
    PIXSTOCK mark and a seeded sample of clean ones (the probe never trains on this split)."""
    import pandas as pd

    from bench.world import build_corpus, render_row

    corpus = build_corpus(100_000, seed=0)
    held = corpus[corpus["split"] == "heldout"]
    marked, clean = held[held["has_watermark"]], held[~held["has_watermark"]]
    rng = np.random.default_rng(0)
    clean = clean.iloc[np.sort(rng.choice(len(clean), min(WATERMARK_HELDOUT_CLEAN, len(clean)), replace=False))]
    rows = pd.concat([marked, clean])
    return [np.asarray(render_row(r)) for _, r in rows.iterrows()], rows["has_watermark"].to_numpy(dtype=bool)


def result_tag(generator) -> str:
    """The name of a watermark result: "simulated", or the model's last path part with ':' as '-'."""
    return "simulated" if generator.simulate else Path(generator.model).name.replace(":", "-")


def calibrate_watermark(config: CalibrationConfig) -> dict:
    """Held-out AUROC of the visible-watermark probe on the planted PIXSTOCK mark, for each kind of
    probe features (EfficientNet-Lite0, the default, and the evaluator CLIP) and two training sets
    (synthetic overlays only, the default, and also train-split planted marks), then the watermark
    reproduction rate of ``stock_cue`` vs ``no_cue`` generations, with ``bench.world.detect_watermark``
    as the truth (not with the simulation: it needs a generator).  The generated run goes to
    ``<out>/watermark-run-<tag>``."""
    from audit.probes.watermark.classifier import ProbeConfig, embed_examples, load_or_train_probe, rates_at, roc_auc
    from audit.probes.watermark.run import DEFAULT_PROBE_FEATURES, PROBE_ON_CLIP, audit_watermark, probe_extractor_spec
    from bench.features import get_extractor
    from bench.world import detect_watermark
    from bench.world.detect import WATERMARK_THRESHOLD

    gen, progress = config.generator, config.progress
    images, labels = heldout_watermark_images()
    probes, extractors = {}, {}
    for features in (DEFAULT_PROBE_FEATURES, PROBE_ON_CLIP):
        extractor = get_extractor(probe_extractor_spec(features, "builtin"))
        extractors[features] = extractor.key
        emb, _, _ = embed_examples(((im, 0, 0) for im in images), extractor, total=len(images), progress=progress)
        for name, probe_config in (("synthetic", ProbeConfig()),
                                   ("synthetic+planted", ProbeConfig(planted=WATERMARK_PLANTED))):
            probe, _, path = load_or_train_probe(extractor, probe_config, progress=progress)
            s = probe.scores(emb)
            probes[f"{features}, {name}"] = {
                "features": features, "training": name, "file": path.name, "config": probe_config.to_dict(),
                "threshold": round(probe.threshold, 4), "synthetic_val_auroc": probe.info["training"]["val_auroc"],
                "heldout_auroc": round(roc_auc(s, labels), 4),
                **{k: round(v, 4) for k, v in rates_at(s, labels, probe.threshold).items()}}
    result = {"tag": result_tag(gen),
              "extractors": extractors, "heldout": {"n_marked": int(labels.sum()), "n_clean": int((~labels).sum())},
              "probes": probes, "default": f"{DEFAULT_PROBE_FEATURES}, synthetic", "target_auroc": TARGET_AUROC}
    if gen.simulate:
        result["reproduction"] = None  # needs a generator
        return result

    from PIL import Image

    from bench.generate import generate
    from bench.runspec import RunSpec

    run = config.paths.out / f"watermark-run-{result['tag']}"
    generate(RunSpec(out=str(run), model=gen.model, prompts=PROMPT_SET, categories=("stock_cue", "no_cue"),
                     images_per_prompt=gen.samples, steps=gen.steps, guidance=(gen.guidance,),
                     seed=SPLIT_SEEDS["evaluation"], batch_size=gen.batch_size), progress=progress)
    truth = None
    per_cat, aurocs = {}, {}
    # The CLIP probe first, so that the run's audit/watermark.parquet is left as the default audit wrote it.
    for features in (PROBE_ON_CLIP, DEFAULT_PROBE_FEATURES):
        audited = audit_watermark(run, probe_features=features, progress=progress).table
        if truth is None:
            truth = np.array([detect_watermark(np.asarray(Image.open(run / p).convert("RGB"))) >= WATERMARK_THRESHOLD
                              for p in audited["path"]])
        audited["truth"] = truth
        for cat, g in audited.groupby("category"):
            c = per_cat.setdefault(cat, {"n": int(len(g)), "truth_rate": round(float(g["truth"].mean()), 4)})
            c[f"probe_rate ({features})"] = round(float(g["visible"].mean()), 4)
        auc = roc_auc(audited["visible_score"].to_numpy(), truth)
        aurocs[features] = None if math.isnan(auc) else round(auc, 4)
    result["reproduction"] = {"run": config.paths.shown(run), "by_category": per_cat, "probe_auroc_vs_truth": aurocs}
    return result


def watermark_markdown(r: dict) -> str:
    """The document's section for one watermark result."""
    lines = [f"## Watermark ({r['tag']})", "",
             "Visible-watermark probe; AUROC on the shapes-laion `heldout` split "
             f"({r['heldout']['n_marked']} rows with the planted PIXSTOCK mark vs {r['heldout']['n_clean']} clean), "
             f"target >= {r['target_auroc']}. Features: "
             + "; ".join(f"`{k}` = `{v}`" for k, v in r["extractors"].items()) + ".", "",
             "| probe features, training | synthetic val AUROC | heldout PIXSTOCK AUROC | TPR | FPR | threshold |",
             "|---|---|---|---|---|---|"]
    for name, p in r["probes"].items():
        lines.append(f"| {name}{' (default)' if name == r['default'] else ''} | {p['synthetic_val_auroc']} | "
                     f"{p['heldout_auroc']} | {p['tpr']} | {p['fpr']} | {p['threshold']} |")
    lines += ["", "\"synthetic\" trains on synthetic overlays only (text and logo marks of random opacity, size "
              "and position, never the PIXSTOCK design): the probe that exists for any data, whose held-out "
              "figure measures detection of a mark it never saw. \"synthetic+planted\" also trains on "
              "train-split rows carrying the corpus' own mark.", ""]
    rep = r.get("reproduction")
    if rep:
        rate_cols = [k for k in next(iter(rep["by_category"].values())) if k.startswith("probe_rate")]
        lines += [f"Reproduction ({rep['run']}): share of generations carrying a watermark "
                  "(truth: `bench.world.detect_watermark`) and the probes' rates.", "",
                  "| category | images | truth rate | " + " | ".join(rate_cols) + " |",
                  "|---|---|---|" + "---|" * len(rate_cols)]
        for cat, c in rep["by_category"].items():
            lines.append(f"| {cat} | {c['n']} | {c['truth_rate']} | " + " | ".join(str(c[k]) for k in rate_cols) + " |")
        lines += ["", "Probe AUROC against the truth on these generations: "
                  + ", ".join(f"{k} {v}" for k, v in rep["probe_auroc_vs_truth"].items()) + ".", ""]
    return "\n".join(lines) + "\n"
