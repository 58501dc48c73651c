"""Watermark calibration: the visible-watermark probe on generations, and its held-out AUROC.

Where the probe figures quoted in ``audit/probes/watermark/run.py``, the
shipped head's JSON and the README come from.

* On generations (the part that sets the shipped threshold): ``shapes-audit``
  prompts of every category (iconic, fresh, stock_cue, no_cue, role) are
  generated with two run seeds (``SPLIT_SEEDS``); the truth of each image is
  the world's exact detector, ``bench.world.detect_watermark(image) >=
  bench.world.detect.WATERMARK_THRESHOLD``.  The probe's threshold is chosen on
  the ``calibration`` seed (``agreement_threshold``: the most images agreeing
  with the truth) and every figure reported is measured on the ``evaluation``
  seed: per category n, truth rate and probe rate with 95% Wilson intervals,
  their difference, and the AUROC against the truth.
* Held out: the probe never trains on shapes-laion's ``heldout`` split, so that
  split measures it on the corpus' own planted PIXSTOCK mark (crisp renders).
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np

from audit.calibration.config import PROMPT_SET, SPLIT_SEEDS, CalibrationConfig

#: Clean heldout rows scored (a seeded sample; every marked heldout row, about
#: 1000 of the 100k-row corpus' 10k heldout rows, is scored).
WATERMARK_HELDOUT_CLEAN = 3000
#: The probes compared, by name: the default (the shipped head, ``default_config()``: labelled
#: generations of the built-in generator) and ``ProbeConfig()``: synthetic overlays on renders, every
#: image through the generator's VAE (the recipe for training without a labelled generator), on
#: EfficientNet-Lite0 features; the default also on the CLIP.  (The previous default, synthetic
#: overlays on crisp renders, measured AUROC 0.9077 against the truth on stock_cue + no_cue
#: generations of seed 2 and flagged 0.599 of the no_cue images: docs/audit-calibration.md before
#: this change.)
DEFAULT_VARIANT = "generated"
SYNTHETIC_VAE = "synthetic+VAE"
CLIP_VARIANTS = (DEFAULT_VARIANT,)


def probe_variants() -> dict:
    from audit.probes.watermark.classifier import ProbeConfig, default_config

    return {DEFAULT_VARIANT: default_config(), SYNTHETIC_VAE: ProbeConfig()}


#: The held-out AUROC the probe is meant to reach (a target, not a measurement).
TARGET_AUROC = 0.95
#: The ``shapes-audit`` categories the probe is measured on, in the document's order.
GENERATION_CATEGORIES = ("iconic", "fresh", "stock_cue", "no_cue", "role")
#: Images per category and split are ``samples`` (``GeneratorSettings``) times this, the iconic
#: category's prompt count (8 samples: 192 images per category and split; a category of fewer
#: prompts gets more images per prompt).
IMAGES_PER_SAMPLE = 24
#: The targets of issue 12 on generations (targets, not measurements): each category's probe rate
#: within this many percentage points of its truth rate, and AUROC against the truth at least this.
TARGET_RATE_PP = 5.0
TARGET_GENERATION_AUROC = 0.97


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


def images_per_prompt(samples: int, n_prompts: int) -> int:
    """Images per prompt that give a category of ``n_prompts`` prompts about ``samples * IMAGES_PER_SAMPLE`` images."""
    return max(1, math.ceil(samples * IMAGES_PER_SAMPLE / n_prompts))


def generation_runs(config: CalibrationConfig, split: str, tag: str) -> dict[str, Path]:
    """Generate (or resume) one run per ``GENERATION_CATEGORIES`` category with the ``split`` seed:
    ``<out>/watermark-<tag>/<split>-<category>``."""
    from collections import Counter

    from bench.generate import generate
    from bench.prompts import load_prompt_set
    from bench.runspec import RunSpec

    gen = config.generator
    counts = Counter(p.category for p in load_prompt_set(PROMPT_SET).prompts)
    runs = {}
    for cat in GENERATION_CATEGORIES:
        run = config.paths.out / f"watermark-{tag}" / f"{split}-{cat}"
        generate(RunSpec(out=str(run), model=gen.model, prompts=PROMPT_SET, categories=(cat,),
                         images_per_prompt=images_per_prompt(gen.samples, counts[cat]), steps=gen.steps,
                         guidance=(gen.guidance,), seed=SPLIT_SEEDS[split], batch_size=gen.batch_size),
                 progress=config.progress)
        runs[cat] = run
    return runs


def generation_features(runs: dict[str, Path], extractor, progress: bool = True):
    """(table with category, path and truth per image, the probe features of those images [N, d]) of
    ``generation_runs``; features are cached in each run's ``features/`` as the audit caches them."""
    import pandas as pd
    from PIL import Image

    from audit.probes.base import load_run_samples
    from bench.features import extract_features
    from bench.world import detect_watermark
    from bench.world.detect import WATERMARK_THRESHOLD

    tables, feats = [], []
    for cat, run in runs.items():
        samples = load_run_samples(run)
        fs = extract_features([run / p for p in samples["path"]], extractor, run / "features", progress=progress,
                              root=run)
        row_of = {p: i for i, p in enumerate(fs.paths)}
        samples = samples[samples["path"].isin(row_of)]
        feats.append(fs.features[[row_of[p] for p in samples["path"]]].astype(np.float32))
        truth = [detect_watermark(np.asarray(Image.open(run / p).convert("RGB"))) >= WATERMARK_THRESHOLD
                 for p in samples["path"]]
        tables.append(pd.DataFrame({"category": cat, "path": [f"{run.name}/{p}" for p in samples["path"]],
                                    "truth": np.asarray(truth, bool)}))
    return pd.concat(tables, ignore_index=True), np.concatenate(feats)


def agreement_threshold(scores: np.ndarray, truth: np.ndarray) -> float:
    """The score threshold (``flagged = score >= t``) with the most images agreeing with ``truth``;
    candidates lie halfway between consecutive distinct scores (and beyond both ends); of tied
    candidates, the median one.  Not clipped to [0, 1]: where scores saturate at exactly 1.0, "flag
    nothing" is a threshold just above 1."""
    scores = np.asarray(scores, np.float64)
    truth = np.asarray(truth, bool)
    u = np.unique(scores)
    cand = np.r_[u[0] - 1e-6, (u[:-1] + u[1:]) / 2, u[-1] + 1e-6] if len(u) else np.array([0.5])
    order = np.argsort(scores)
    s, t = scores[order], truth[order]
    # images below a candidate are called clean: agreements = clean truths below + marked truths at or above
    below = np.searchsorted(s, cand, side="left")
    clean_below = np.r_[0, np.cumsum(~t)][below]
    marked_above = t.sum() - np.r_[0, np.cumsum(t)][below]
    agree = clean_below + marked_above
    best = np.flatnonzero(agree == agree.max())
    return float(cand[best[len(best) // 2]])


def rate_figures(flagged: np.ndarray, truth: np.ndarray) -> dict:
    """n, truth and probe counts and rates with 95% Wilson intervals, and probe minus truth in pp."""
    from bench.intervals import wilson

    n, k_t, k_p = int(len(truth)), int(np.sum(truth)), int(np.sum(flagged))
    tl, th = wilson(k_t, n)
    pl, ph = wilson(k_p, n)
    return {"n": n, "truth_k": k_t, "truth_rate": round(k_t / n, 4), "truth_ci": [round(tl, 4), round(th, 4)],
            "probe_k": k_p, "probe_rate": round(k_p / n, 4), "probe_ci": [round(pl, 4), round(ph, 4)],
            "diff_pp": round(100 * (k_p - k_t) / n, 2)}


def split_figures(table, scores: np.ndarray, threshold: float) -> dict:
    """Per-category and overall rate figures at ``threshold``, agreement and AUROC against the truth."""
    from audit.probes.watermark.classifier import roc_auc

    flagged = scores >= threshold
    truth = table["truth"].to_numpy(bool)
    cats = {cat: rate_figures(flagged[idx], truth[idx])
            for cat in GENERATION_CATEGORIES if len(idx := np.flatnonzero(table["category"].to_numpy() == cat))}
    auc = roc_auc(scores, truth)
    return {"by_category": cats, "all": rate_figures(flagged, truth),
            "agreement": round(float((flagged == truth).mean()), 4),
            "auroc": None if math.isnan(auc) else round(auc, 4),
            "max_abs_diff_pp": max(abs(c["diff_pp"]) for c in cats.values())}


def generation_data(extractor, config: CalibrationConfig, tag: str) -> dict:
    """{split: (table, features)} of both seeds' generations (``generation_runs``, ``generation_features``)."""
    return {split: generation_features(generation_runs(config, split, tag), extractor, config.progress)
            for split in ("calibration", "evaluation")}


def calibrate_on_generations(probe, extractor, config: CalibrationConfig, tag: str, data: dict | None = None) -> dict:
    """The probe's threshold chosen on generations of the calibration seed, and the figures of both
    seeds at it (and, for the evaluation seed, at the probe's own threshold when that differs).
    ``data``: ``generation_data`` for ``extractor``, when already computed."""
    gen = config.generator
    data = generation_data(extractor, config, tag) if data is None else data
    scores = {split: probe.scores(emb) for split, (_, emb) in data.items()}
    cal_table = data["calibration"][0]
    threshold = agreement_threshold(scores["calibration"], cal_table["truth"].to_numpy(bool))
    out = {
        "model": gen.model, "prompts": PROMPT_SET, "categories": list(GENERATION_CATEGORIES),
        "steps": gen.steps, "guidance": gen.guidance, "samples": gen.samples, "seeds": dict(SPLIT_SEEDS),
        "runs": config.paths.shown(config.paths.out / f"watermark-{tag}"),
        "truth": "bench.world.detect_watermark(image) >= bench.world.detect.WATERMARK_THRESHOLD",
        "rule": "agreement_threshold: the most calibration-seed images agreeing with the truth",
        "threshold": round(threshold, 6),
        "probe_threshold": round(float(probe.threshold), 6),
        "targets": {"rate_pp": TARGET_RATE_PP, "auroc": TARGET_GENERATION_AUROC},
        "splits": {split: split_figures(data[split][0], scores[split], threshold) for split in data},
    }
    if abs(probe.threshold - threshold) > 1e-6:
        out["evaluation_at_probe_threshold"] = split_figures(data["evaluation"][0], scores["evaluation"],
                                                             probe.threshold)
    return out


def calibrate_watermark(config: CalibrationConfig) -> dict:
    """Held-out AUROC of the visible-watermark probe on the planted PIXSTOCK mark, for each kind of
    probe features (EfficientNet-Lite0, the default, and the evaluator CLIP) and two training sets
    (synthetic overlays only, the default, and also train-split planted marks); then, with a
    generator (not with the simulation), the default probe on generations (``calibrate_on_generations``).
    The generated runs go to ``<out>/watermark-<tag>/``."""
    from audit.probes.watermark.classifier import embed_examples, load_or_train_probe, rates_at, roc_auc
    from audit.probes.watermark.run import DEFAULT_PROBE_FEATURES, PROBE_ON_CLIP, probe_extractor_spec
    from bench.features import get_extractor

    gen, progress = config.generator, config.progress
    images, labels = heldout_watermark_images()
    probes, extractors, loaded = {}, {}, {}
    for features in (DEFAULT_PROBE_FEATURES, PROBE_ON_CLIP):
        extractor = get_extractor(probe_extractor_spec(features, "builtin"))
        extractors[features] = extractor.key
        emb, _, _ = embed_examples(((im, 0, 0) for im in images), extractor, total=len(images), progress=progress)
        for name, probe_config in probe_variants().items():
            if features != DEFAULT_PROBE_FEATURES and name not in CLIP_VARIANTS:
                continue
            probe, how, path = load_or_train_probe(extractor, probe_config, progress=progress)
            loaded[f"{features}, {name}"] = (probe, extractor)
            s = probe.scores(emb)
            probes[f"{features}, {name}"] = {
                "features": features, "training": name, "file": path.name, "source": how,
                "config": probe_config.to_dict(),
                "threshold": round(probe.threshold, 4), "synthetic_val_auroc": probe.info["training"]["val_auroc"],
                "heldout_auroc": round(roc_auc(s, labels), 4),
                **{k: round(v, 4) for k, v in rates_at(s, labels, probe.threshold).items()}}
    default = f"{DEFAULT_PROBE_FEATURES}, {DEFAULT_VARIANT}"
    result = {"tag": result_tag(gen),
              "extractors": extractors, "heldout": {"n_marked": int(labels.sum()), "n_clean": int((~labels).sum())},
              "probes": probes, "default": default, "target_auroc": TARGET_AUROC}
    if gen.simulate:
        result["generations"] = None  # needs a generator
        return result
    data = {}  # generation_data by extractor key

    def on_generations(name):
        probe, extractor = loaded[name]
        if extractor.key not in data:
            data[extractor.key] = generation_data(extractor, config, result["tag"])
        return calibrate_on_generations(probe, extractor, config, result["tag"], data[extractor.key])

    result["generations"] = g = on_generations(default)
    # the other probes on the same generations, each at its own calibration-seed threshold
    g["variants"] = {name: {k: v for k, v in on_generations(name).items() if k in ("threshold", "splits")}
                     for name in loaded if name != default}
    return result


def _rate(k: int, n: int, ci: list) -> str:
    return f"{k / n:.3f} [{ci[0]:.3f}, {ci[1]:.3f}]"


def _category_table(figures: dict) -> list[str]:
    lines = ["| category | n | truth rate [95% CI] | probe rate [95% CI] | probe - truth (pp) |",
             "|---|---:|---:|---:|---:|"]
    rows = list(figures["by_category"].items()) + [("all", figures["all"])]
    for cat, c in rows:
        name = f"**{cat}**" if cat == "all" else cat
        lines.append(f"| {name} | {c['n']} | {_rate(c['truth_k'], c['n'], c['truth_ci'])} | "
                     f"{_rate(c['probe_k'], c['n'], c['probe_ci'])} | {c['diff_pp']:+.2f} |")
    return lines


def generation_markdown(g: dict, default_probe: dict) -> list[str]:
    """The generations part of the watermark section (``calibrate_on_generations``' result)."""
    cal, ev = g["splits"]["calibration"], g["splits"]["evaluation"]
    t = g["targets"]
    lines = [f"### Visible watermark on generations of `{g['model']}`", "",
             f"Default probe head `{default_probe['file']}` ({default_probe['source']}; training config "
             f"`{json.dumps(default_probe['config'], sort_keys=True)}`). Prompts: `{g['prompts']}`, every category, "
             f"{g['steps']} steps, guidance {g['guidance']}; one run per category and seed under `{g['runs']}`. "
             f"Truth: `{g['truth']}`.", "",
             f"Threshold **{g['threshold']:.4f}**, chosen on the calibration seed ({g['seeds']['calibration']}, "
             f"{cal['all']['n']} images) by {g['rule']}; the probe head carries threshold "
             f"{g['probe_threshold']:.4f}. Every figure below the calibration table is measured on the "
             f"evaluation seed ({g['seeds']['evaluation']}, {ev['all']['n']} images). Targets: each category's probe "
             f"rate within {t['rate_pp']:g} pp of its truth rate, AUROC >= {t['auroc']}.", "",
             f"**Evaluation seed {g['seeds']['evaluation']}** (threshold {g['threshold']:.4f}): AUROC against the "
             f"truth **{ev['auroc']}**, agreement {ev['agreement']}, largest |probe - truth| "
             f"{ev['max_abs_diff_pp']:.2f} pp.", ""]
    lines += _category_table(ev)
    lines += ["", f"Calibration seed {g['seeds']['calibration']} (where the threshold was chosen): AUROC "
              f"{cal['auroc']}, agreement {cal['agreement']}, largest |probe - truth| {cal['max_abs_diff_pp']:.2f} pp.",
              ""]
    lines += _category_table(cal)
    variants = g.get("variants") or {}
    if variants:
        lines += ["", "The other probes on the same generations, each at the threshold that its own calibration-seed "
                  "scores give by the same rule (evaluation seed):", "",
                  "| probe features, training | threshold | AUROC | agreement | largest \\|probe - truth\\| (pp) | "
                  + " | ".join(f"{c} (pp)" for c in ev["by_category"]) + " |",
                  "|---|---:|---:|---:|---:|" + "---:|" * len(ev["by_category"])]
        for name, v in {f"{default_probe['features']}, {default_probe['training']} (default)": g, **variants}.items():
            e = v["splits"]["evaluation"]
            lines.append(f"| {name} | {v['threshold']:.4f} | {e['auroc']} | {e['agreement']} | {e['max_abs_diff_pp']:.2f} | "
                         + " | ".join(f"{e['by_category'][c]['diff_pp']:+.2f}" for c in ev["by_category"]) + " |")
    other = g.get("evaluation_at_probe_threshold")
    if other:
        lines += ["", f"Evaluation seed at the head's own threshold {g['probe_threshold']:.4f} (it differs from the "
                  f"one chosen here): largest |probe - truth| {other['max_abs_diff_pp']:.2f} pp, agreement "
                  f"{other['agreement']}.", ""]
        lines += _category_table(other)
    return lines + [""]


def watermark_markdown(r: dict) -> str:
    """The document's section for one watermark result."""
    lines = [f"## Watermark ({r['tag']})", "",
             "Visible-watermark probe; AUROC on the shapes-laion `heldout` split "
             f"({r['heldout']['n_marked']} rows with the planted PIXSTOCK mark vs {r['heldout']['n_clean']} clean), "
             f"target >= {r['target_auroc']}. Features: "
             + "; ".join(f"`{k}` = `{v}`" for k, v in r["extractors"].items()) + ".", "",
             "| probe features, training | validation AUROC | heldout PIXSTOCK AUROC | TPR | FPR | threshold |",
             "|---|---|---|---|---|---|"]
    for name, p in r["probes"].items():
        lines.append(f"| {name}{' (default)' if name == r['default'] else ''} | {p['synthetic_val_auroc']} | "
                     f"{p['heldout_auroc']} | {p['tpr']} | {p['fpr']} | {p['threshold']} |")
    lines += ["", "\"generated\" (the default, the shipped head) trains on generations of the built-in generator "
              "from shapes-laion train captions (half of them with the stock-photo cue; run seed 0, never a "
              "calibration seed), labelled by the world's exact detector (`audit.probes.watermark.generated`). "
              "\"synthetic\" is synthetic overlays (text and logo marks of random opacity, size and position, "
              "never the PIXSTOCK design) on shapes-world renders, the clean image and its marked twin alike; "
              "\"+VAE\": every training image encoded and decoded by the generator's VAE. The validation AUROC "
              "is measured on a held-out fifth of each probe's own training set; the heldout PIXSTOCK figures on "
              "crisp renders, which none of these probes sees in training.", ""]
    g = r.get("generations")
    if g:
        lines += generation_markdown(g, r["probes"][r["default"]])
    return "\n".join(lines) + "\n"
