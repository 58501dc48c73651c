#!/usr/bin/env python3
"""Calibrate the audit probes on the built-in shapes world, where the right answers are known.

One function per probe computes its figures from generated (or simulated)
images against ground truth and returns a JSON-able dict, written to
``docs/audit-calibration/<probe>-<tag>.json`` (committed, so that calibrating one
probe again keeps the others' figures); ``write_doc`` turns every such file
present into ``docs/audit-calibration.md``.  Runs and indexes go to
``build/calibration/``.

Memorization (``calibrate_memorization``): generate the ``iconic`` and
``fresh`` prompts of the ``shapes-audit`` set (several samples each), audit
them with ``audit.probes.memorization.run`` against a shapes-laion index, and compare the
copy verdict with the truth read by the world's exact detector: a generation
of an iconic caption copies its training image when ``bench.world.detect``
reads back the iconic scene (same number of objects, and every object's
shape, colour and size, its centre within ``compare_scenes``' tolerance of
0.03 of the image side); generations of fresh prompts are never copies.  The
thresholds are chosen on a calibration split and reported on an evaluation
split made with other seeds.

``--simulate`` replaces the generator by renders of the prompts' scene specs
with perturbations that mimic a generator (see ``simulate_image``); the
document labels those figures as simulated.

Examples:
    python scripts/calibrate_audit.py --simulate
    python scripts/calibrate_audit.py --model builtin:tiny-random --samples 1 --steps 2
    python scripts/calibrate_audit.py --model builtin:shapes-ldm --index build/calibration/index-shapes-laion-20000
"""

from __future__ import annotations

import argparse
import io
import json
import math
import shutil
import sys
import zlib
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:  # runnable from a checkout without installing
    sys.path.insert(0, str(REPO))

from bench.atomic import atomic_write_bytes, atomic_write_text  # noqa: E402
from bench.errors import UserError  # noqa: E402

OUT = REPO / "build" / "calibration"
DOC = REPO / "docs" / "audit-calibration.md"
RESULTS = REPO / "docs" / "audit-calibration"
PROMPT_SET = "shapes-audit"
#: Run seeds of the two splits: thresholds are fit on "calibration" and
#: reported on "evaluation", so the figures are not fit on themselves.
SPLIT_SEEDS = {"calibration": 1, "evaluation": 2}
COSINE_GRID = np.round(np.arange(0.50, 0.951, 0.05), 2)

# --------------------------------------------------------------------------- simulation

#: How a simulated generation of an iconic caption behaves, with its share:
#: a faithful copy (sub-pixel jitter), a loose copy (about a pixel of jitter
#: per object: mostly inside the detector's 0.03 tolerance, some outside) or
#: a variation (the composition changed: one object moved, dropped, recoloured
#: or reshaped), i.e. not a copy.
ICONIC_BEHAVIOUR = {"copy": 0.5, "loose": 0.2, "variation": 0.3}
JITTER = {"copy": 0.004, "loose": 0.02}
#: Behaviours that are copies of the training image (for the behaviour truth).
COPY_BEHAVIOURS = ("copy", "loose")
#: Generator noise on every simulated image: Gaussian blur radius (px),
#: per-channel colour offset (grey levels), per-pixel noise (grey levels).
BLUR_RANGE = (0.2, 0.6)
COLOUR_OFFSET_SD = 4.0
PIXEL_NOISE_SD = 3.0


def _jitter(scene, rng: np.random.Generator, sd: float):
    from bench.world import ObjectSpec, SceneSpec

    objs = tuple(ObjectSpec(o.shape, o.colour, o.size,
                            float(np.clip(o.x + rng.normal(0, sd), 0, 1)),
                            float(np.clip(o.y + rng.normal(0, sd), 0, 1))) for o in scene.objects)
    return SceneSpec(objs, background=scene.background, watermark=scene.watermark)


def _vary(scene, rng: np.random.Generator):
    """Change the composition in one way a detector must see (not a copy)."""
    from dataclasses import replace

    from bench.world import COLOURS, SHAPES, SceneSpec

    objs = list(scene.objects)
    i = int(rng.integers(len(objs)))
    how = ("move", "drop", "recolour", "reshape")[int(rng.integers(4))]
    if how == "drop" and len(objs) > 1:
        del objs[i]
    elif how == "recolour":
        objs[i] = replace(objs[i], colour=str(rng.choice([c for c in COLOURS if c != objs[i].colour])))
    elif how == "reshape":
        objs[i] = replace(objs[i], shape=str(rng.choice([s for s in SHAPES if s != objs[i].shape])))
    else:  # move by 0.08-0.25 of the side (far beyond the 0.03 tolerance)
        how = "move"
        angle, r = rng.uniform(0, 2 * math.pi), rng.uniform(0.08, 0.25)
        objs[i] = replace(objs[i], x=float(np.clip(objs[i].x + r * math.cos(angle), 0.05, 0.95)),
                          y=float(np.clip(objs[i].y + r * math.sin(angle), 0.05, 0.95)))
    return SceneSpec(tuple(objs), background=scene.background, watermark=scene.watermark), how


def _generator_noise(img, rng: np.random.Generator) -> np.ndarray:
    from PIL import ImageFilter

    img = img.filter(ImageFilter.GaussianBlur(radius=float(rng.uniform(*BLUR_RANGE))))
    arr = np.asarray(img, dtype=np.float64)
    arr = arr + rng.normal(0, COLOUR_OFFSET_SD, size=3) + rng.normal(0, PIXEL_NOISE_SD, size=arr.shape)
    return np.clip(np.rint(arr), 0, 255).astype(np.uint8)


def simulate_image(scene, category: str, rng: np.random.Generator) -> tuple[np.ndarray, str]:
    """A stand-in for a generation of a prompt whose scene is ``scene``; returns (HWC uint8, behaviour)."""
    from bench.world import render

    if category == "iconic":
        names = list(ICONIC_BEHAVIOUR)
        kind = names[int(rng.choice(len(names), p=list(ICONIC_BEHAVIOUR.values())))]
    else:
        kind = "copy"  # a fresh prompt rendered faithfully: its scene is in no training row
    if kind == "variation":
        scene, how = _vary(scene, rng)
        kind = f"variation:{how}"
        scene = _jitter(scene, rng, JITTER["copy"])
    else:
        scene = _jitter(scene, rng, JITTER[kind])
    return _generator_noise(render(scene), rng), kind


# --------------------------------------------------------------------------- runs

def _scene(prompt):
    from bench.world import SceneSpec

    return SceneSpec.from_dict(prompt.to_dict()["spec"])


def make_simulated_run(out: Path, prompts, samples: int, seed: int) -> dict[str, str]:
    """Write simulated images and import them as a run (``t2i-bench import``); returns behaviour by image stem."""
    from PIL import Image

    from bench.importer import import_images

    import pandas as pd

    folder = out.parent / f"{out.name}-images"
    kinds, pngs = {}, {}
    for p in prompts:
        for k in range(samples):
            rng = np.random.default_rng(zlib.crc32(f"{seed}/{p.id}/{k}".encode()))
            arr, kind = simulate_image(_scene(p), p.category, rng)
            buf = io.BytesIO()
            Image.fromarray(arr).save(buf, format="PNG")
            pngs[f"{p.id}_{k}.png"] = buf.getvalue()
            kinds[f"{p.id}__s{k:03d}__gna"] = kind
    # The images are a function of the seeds: an existing run with exactly these images is
    # reused (and so are its cached features); anything else is rebuilt from scratch.
    samples_file = out / "samples.parquet"
    if samples_file.exists() and set(pd.read_parquet(samples_file).image_id) == set(kinds) and all(
            (folder / name).is_file() and (folder / name).read_bytes() == data for name, data in pngs.items()):
        return kinds
    shutil.rmtree(out, ignore_errors=True)
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    for name, data in pngs.items():
        atomic_write_bytes(folder / name, data)
    import_images(str(folder), PROMPT_SET, "simulated-shapes-generator", str(out))
    return kinds


def make_generated_run(out: Path, model: str, samples: int, seed: int, steps: int, guidance: float,
                       batch_size: int, progress: bool) -> None:
    """Generate the iconic and fresh prompts with ``model`` (resumes an interrupted run)."""
    from bench.generate import generate
    from bench.runspec import RunSpec

    generate(RunSpec(out=str(out), model=model, prompts=PROMPT_SET, categories=("iconic", "fresh"),
                     images_per_prompt=samples, steps=steps, guidance=(guidance,), seed=seed,
                     batch_size=batch_size), progress=progress)


def open_or_build_index(folder: Path | None, source: str, progress: bool):
    """The index to audit against: ``folder`` if given, else ``build/calibration/index-<source>``
    (built with the built-in evaluator CLIP the first time)."""
    from audit.index import ClipIndex, build_index

    if folder is not None:
        return ClipIndex.open(folder)
    target = OUT / f"index-{source.replace(':', '-')}"
    if (target / "t2i_index.json").exists():
        return ClipIndex.open(target)
    from bench.features import get_extractor
    from bench.score import clip_extractor_spec

    return build_index(source, target, get_extractor(clip_extractor_spec("builtin")), progress=progress)


# --------------------------------------------------------------------------- memorization

def copies_truth(image: np.ndarray, scene) -> bool:
    """Ground truth: the detector reads back ``scene`` (count, shapes, colours, sizes, positions)."""
    from bench.world import compare_scenes, detect

    found = detect(image)
    cmp = compare_scenes(scene, found)
    return all(cmp[f][0] == cmp[f][1] for f in ("count", "shape", "colour", "size", "position"))


def image_table(run: Path, table, prompts_by_id: dict):
    """One row per audited image: category, truth, and its candidates (cosine, distance per rank)."""
    import pandas as pd
    from PIL import Image

    rows = []
    for image_id, g in table.sort_values("rank").groupby("image_id", sort=True):
        first = g.iloc[0]
        p = prompts_by_id[first.prompt_id]
        truth = False
        if p.category == "iconic":
            truth = copies_truth(np.asarray(Image.open(run / first.path).convert("RGB")), _scene(p))
        rows.append({"image_id": image_id, "prompt_id": first.prompt_id, "category": p.category,
                     "truth": truth, "cosines": g.clip_cosine.to_numpy(), "distances": g.copy_distance.to_numpy(),
                     "neighbour_ids": g.neighbour_id.to_numpy(), "dup_group": p.extra.get("dup_group"),
                     "is_copy_default": bool(g.is_copy.any())})
    return pd.DataFrame(rows)


def image_scores(images, threshold_cosine: float) -> np.ndarray:
    """Per image: the smallest copy distance among candidates that pass the cosine gate (inf if none)."""
    out = []
    for cos, dist in zip(images.cosines, images.distances):
        ok = (cos >= threshold_cosine) & np.isfinite(dist)
        out.append(float(dist[ok].min()) if ok.any() else math.inf)
    return np.asarray(out)


def choose_thresholds(images) -> dict:
    """Thresholds from the calibration split.

    Cosine gate: one grid step (0.05) below the largest grid value that every
    true copy's best candidate passes (the gate only drops what CLIP finds
    unrelated; 0.5 when there are no true copies).  Distance: the threshold
    that maximises F1 (the harmonic mean of precision and recall, the two
    figures the targets are set on; Youden's J would trade precision away
    because the many fresh negatives make the false positive rate cheap),
    placed in the middle of the gap to the next larger score."""
    truth = images.truth.to_numpy()
    if truth.any():
        best_cos = np.array([c[np.nanargmin(np.where(np.isfinite(d), d, np.inf))] if np.isfinite(d).any() else -1
                             for c, d in zip(images.cosines[truth], images.distances[truth])])
        passing = COSINE_GRID[COSINE_GRID <= best_cos.min()]
        tc = float(max(passing.max() - 0.05, COSINE_GRID[0])) if passing.size else float(COSINE_GRID[0])
    else:
        tc = float(COSINE_GRID[0])
    scores = image_scores(images, tc)
    finite = np.unique(scores[np.isfinite(scores)])
    if not truth.any() or not finite.size:
        return {"clip_cosine": tc, "copy_distance": None, "f1": None}
    best_f1, best_t = -1.0, float(finite[0])
    for i, t in enumerate(finite):
        flagged = scores <= t
        tp = int((flagged & truth).sum())
        f1 = 2 * tp / (int(flagged.sum()) + int(truth.sum()))
        if f1 > best_f1:
            nxt = finite[i + 1] if i + 1 < finite.size else t
            best_f1, best_t = f1, float((t + nxt) / 2)
    return {"clip_cosine": tc, "copy_distance": round(best_t, 4), "f1": round(best_f1, 4)}


def verdict_metrics(images, threshold_cosine: float, threshold_distance: float, truth_col: str = "truth") -> dict:
    """Precision/recall of the image-level copy verdict and the false copy rate on fresh prompts."""
    scores = image_scores(images, threshold_cosine)
    flagged = scores <= threshold_distance
    truth = images[truth_col].to_numpy(dtype=bool)
    fresh = (images.category == "fresh").to_numpy()
    tp, fp, fn = int((flagged & truth).sum()), int((flagged & ~truth).sum()), int((~flagged & truth).sum())
    return {
        "n_images": int(len(images)), "n_iconic": int((images.category == "iconic").sum()),
        "n_fresh": int(fresh.sum()), "n_true_copies": int(truth.sum()), "n_flagged": int(flagged.sum()),
        "tp": tp, "fp": fp, "fn": fn,
        "precision": tp / (tp + fp) if tp + fp else None,
        "recall": tp / (tp + fn) if tp + fn else None,
        "false_copy_rate_fresh": float(flagged[fresh].mean()) if fresh.any() else None,
        "n_fresh_flagged": int(flagged[fresh].sum()),
    }


def roc(images, threshold_cosine: float, truth_col: str = "truth") -> dict:
    """TPR/FPR of the image verdict over copy-distance thresholds (cosine gate fixed), and AUROC."""
    from sklearn.metrics import roc_auc_score, roc_curve

    truth = images[truth_col].to_numpy(dtype=bool)
    if truth.all() or not truth.any():
        return {"auroc": None, "fpr": [], "tpr": [], "thresholds": []}
    scores = image_scores(images, threshold_cosine)
    # Lower distance = more of a copy; images with no candidate past the gate get the worst score.
    worst = np.nanmax(scores[np.isfinite(scores)]) + 1 if np.isfinite(scores).any() else 1.0
    s = -np.where(np.isfinite(scores), scores, worst)
    fpr, tpr, thr = roc_curve(truth, s)
    return {"auroc": float(roc_auc_score(truth, s)), "fpr": fpr.round(5).tolist(), "tpr": tpr.round(5).tolist(),
            "thresholds": [None if not np.isfinite(t) else round(float(-t), 5) for t in thr]}


def _plot_roc(curve: dict, path: Path, title: str) -> str | None:
    if curve["auroc"] is None:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(4, 4), dpi=100)
    ax.step(curve["fpr"], curve["tpr"], where="post", label=f"AUROC {curve['auroc']:.4f}")
    ax.plot([0, 1], [0, 1], ":", color="grey")
    ax.set_xlabel("false positive rate")
    ax.set_ylabel("true positive rate")
    ax.set_title(title, fontsize=9)
    ax.legend(loc="lower right")
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    plt.close(fig)
    atomic_write_bytes(path, buf.getvalue())
    return _shown(path)


def _shown(path: Path) -> str:
    """A path as the document shows it: relative to the repository when inside it."""
    path = Path(path).resolve()
    return path.relative_to(REPO).as_posix() if path.is_relative_to(REPO) else str(path)


def calibrate_memorization(args) -> dict:
    """The memorization half: runs per split, audit, truth, thresholds, figures."""
    from audit.probes.memorization.run import (DEFAULT_K, DEFAULT_THRESHOLD_COSINE, DEFAULT_THRESHOLD_DISTANCE,
                                    audit_memorization)
    from bench.prompts import load_prompt_set

    prompts = [p for p in load_prompt_set(PROMPT_SET).prompts if p.category in ("iconic", "fresh")]
    by_id = {p.id: p for p in prompts}
    index = open_or_build_index(args.index, args.index_source, not args.no_progress)
    mode = "simulated" if args.simulate else args.model
    run_tag = "simulated" if args.simulate else args.model.replace(":", "-").replace("/", "-")
    tag = run_tag if args.k == DEFAULT_K else f"{run_tag}-k{args.k}"  # k changes the audit, not the runs
    splits, kinds, tables = {}, {}, {}
    for split, seed in SPLIT_SEEDS.items():
        run = OUT / "runs" / f"memorization-{run_tag}-{split}"
        if args.simulate:
            kinds[split] = make_simulated_run(run, prompts, args.samples, seed)
        else:
            make_generated_run(run, args.model, args.samples, seed, args.steps, args.guidance,
                               args.batch_size, not args.no_progress)
        result = audit_memorization(run, index, k=args.k, progress=not args.no_progress)
        images = image_table(run, result.table, by_id)
        if split in kinds:
            # The simulation knows what it made: faithful and loose copies (every object
            # within about a pixel) are copies, variations and fresh prompts are not.  That
            # is the truth the thresholds are fit on; the detector's reading (its 0.03
            # tolerance lies inside the loose copies' spread, so it calls some visually
            # identical images "not a copy") is reported beside it.
            images["behaviour"] = images.image_id.map(kinds[split])
            images["truth_detector"] = images["truth"]
            images["truth"] = ((images.category == "iconic")
                               & images.behaviour.str.split(":").str[0].isin(COPY_BEHAVIOURS))
        splits[split] = images
        tables[split] = (run, result.table)
    chosen = choose_thresholds(splits["calibration"])
    eval_images = splits["evaluation"]
    td = chosen["copy_distance"] if chosen["copy_distance"] is not None else DEFAULT_THRESHOLD_DISTANCE
    curve = roc(eval_images, chosen["clip_cosine"])
    plot = _plot_roc(curve, DOC.parent / f"audit-calibration-roc-{tag}.png",
                     f"memorization, evaluation split ({mode})")
    out = {
        "probe": "memorization", "mode": mode, "tag": tag, "simulated": bool(args.simulate),
        "index": {"folder": _shown(index.folder), "n": int(index.n), "model_key": index.model_key},
        "samples_per_prompt": args.samples, "split_seeds": SPLIT_SEEDS, "k": args.k,
        "chosen_thresholds": chosen,
        "module_defaults": {"clip_cosine": DEFAULT_THRESHOLD_COSINE, "copy_distance": DEFAULT_THRESHOLD_DISTANCE},
        "calibration_at_chosen": verdict_metrics(splits["calibration"], chosen["clip_cosine"], td),
        "evaluation_at_chosen": verdict_metrics(eval_images, chosen["clip_cosine"], td),
        "evaluation_at_defaults": verdict_metrics(eval_images, DEFAULT_THRESHOLD_COSINE, DEFAULT_THRESHOLD_DISTANCE),
        "roc_evaluation": curve, "roc_plot": plot,
        "distance_quantiles": _distance_quantiles(eval_images, chosen["clip_cosine"]),
        "candidate_recall_evaluation": candidate_recall(eval_images, index),
        "side_ablation_auroc": side_ablation(*tables["evaluation"], index, eval_images, chosen["clip_cosine"]),
        "method": result.summary["method"],
    }
    if args.simulate:
        out["simulation"] = {"iconic_behaviour": ICONIC_BEHAVIOUR, "jitter_sd": JITTER, "blur_radius": BLUR_RANGE,
                             "colour_offset_sd": COLOUR_OFFSET_SD, "pixel_noise_sd": PIXEL_NOISE_SD,
                             "copy_behaviours": list(COPY_BEHAVIOURS),
                             "detector_truth_by_behaviour": _truth_by_behaviour(eval_images),
                             "detector_truth": {
                                 "evaluation_at_chosen": verdict_metrics(eval_images, chosen["clip_cosine"], td,
                                                                         "truth_detector"),
                                 "evaluation_at_defaults": verdict_metrics(eval_images, DEFAULT_THRESHOLD_COSINE,
                                                                           DEFAULT_THRESHOLD_DISTANCE, "truth_detector"),
                                 "auroc": roc(eval_images, chosen["clip_cosine"], "truth_detector")["auroc"]}}
    return out


def side_ablation(run: Path, table, index, images, threshold_cosine: float, sides=(16, 32, 64)) -> dict:
    """AUROC of the per-image best copy distance against the truth, for other comparison sides
    (same candidates and cosine gate; the audit's own side is one of them)."""
    from PIL import Image
    from sklearn.metrics import roc_auc_score

    from audit.probes.memorization.copy_similarity import GRID, copy_distance

    truth = images.truth.to_numpy()
    if truth.all() or not truth.any():
        return {}
    neighbours: dict[int, np.ndarray | None] = {}
    scores = {s: [] for s in sides}
    for image_id in images.image_id:  # images is sorted by image_id, like the groups below
        g = table[(table.image_id == image_id) & (table.clip_cosine >= threshold_cosine)]
        gen = np.asarray(Image.open(run / table.loc[table.image_id == image_id, "path"].iloc[0]).convert("RGB"))
        for side in sides:
            best = math.inf
            for nid in g.neighbour_id:
                if nid not in neighbours:
                    neighbours[nid] = index.load_image(int(nid))
                if neighbours[nid] is not None:
                    best = min(best, copy_distance(gen, neighbours[nid], side=side, grid=GRID))
            scores[side].append(best)
    out = {}
    for side, vals in scores.items():
        v = np.asarray(vals)
        v = np.where(np.isfinite(v), v, 2.0)  # no candidate: worse than any distance (max is 1)
        out[str(side)] = round(float(roc_auc_score(truth, -v)), 4)
    return out


def candidate_recall(images, index) -> float | None:
    """Share of true copies whose own iconic training image is among their k CLIP candidates
    (the ceiling on the audit's recall: a copy CLIP does not retrieve cannot be confirmed)."""
    truth = images.truth.to_numpy(dtype=bool)
    if "dup_group" not in index.metadata_columns() or not truth.any():
        return None
    groups = index.metadata(["dup_group"])["dup_group"].to_numpy()
    copies = images[truth]
    return float(np.mean([(groups[ids] == g).any() for ids, g in zip(copies.neighbour_ids, copies.dup_group)]))


def _distance_quantiles(images, threshold_cosine: float) -> dict:
    scores = image_scores(images, threshold_cosine)
    out = {}
    for name, mask in (("true copies", images.truth.to_numpy()),
                       ("iconic, not copies", ((images.category == "iconic") & ~images.truth).to_numpy()),
                       ("fresh", (images.category == "fresh").to_numpy())):
        s = scores[mask]
        s = s[np.isfinite(s)]
        out[name] = {"n": int(mask.sum()), **({q: round(float(np.quantile(s, v)), 4) for q, v in
                                               (("min", 0), ("p05", 0.05), ("median", 0.5), ("p95", 0.95), ("max", 1))}
                                              if s.size else {})}
    return out


def _truth_by_behaviour(images) -> dict:
    """Per simulated behaviour: how many images the detector reads back as the iconic scene."""
    iconic = images[images.category == "iconic"].copy()
    iconic["kind"] = iconic.behaviour.str.split(":").str[0]
    return {k: {"n": int(len(g)), "true_copies": int(g.truth_detector.sum())} for k, g in iconic.groupby("kind")}


def _fmt(v, digits: int = 3) -> str:
    return "n/a" if v is None else (f"{v:.{digits}f}" if isinstance(v, float) else str(v))


def memorization_markdown(r: dict) -> str:
    label = "SIMULATED (renders of the prompts' scenes with generator-like perturbations, not a model)" \
        if r["simulated"] else f"generated by `{r['mode']}`"
    c, e, d = r["calibration_at_chosen"], r["evaluation_at_chosen"], r["evaluation_at_defaults"]
    t = r["chosen_thresholds"]
    lines = [
        f"### Memorization: {label}",
        "",
        f"Index: `{r['index']['folder']}` ({r['index']['n']} rows). Prompts: `shapes-audit` iconic (24) and "
        f"fresh (48), {r['samples_per_prompt']} samples each per split; run seeds {r['split_seeds']}; k = {r['k']}.",
        ("Truth: what the simulated generator made. An iconic generation is a copy when it was made as a "
         f"{' or '.join(r['simulation']['copy_behaviours'])} copy of its training image; variations (one object "
         "moved, dropped, recoloured or reshaped) and fresh prompts are not. The detector's reading is reported "
         "below." if r["simulated"] else
         "Truth: an iconic generation is a copy when the exact detector reads back the iconic scene "
         "(count, shapes, colours, sizes; centres within 0.03); fresh generations are never copies."),
        "",
        f"Thresholds chosen on the calibration split: clip_cosine >= **{_fmt(t['clip_cosine'], 2)}**, "
        f"copy_distance <= **{_fmt(t['copy_distance'], 4)}** (max F1, {_fmt(t['f1'])}). "
        f"Module defaults: clip_cosine >= {r['module_defaults']['clip_cosine']}, "
        f"copy_distance <= {r['module_defaults']['copy_distance']}.",
        "",
        "| split, thresholds | images | true copies | flagged | precision | recall | false copy rate (fresh) |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for name, m in (("calibration, chosen", c), ("**evaluation, chosen**", e), ("evaluation, module defaults", d)):
        lines.append(f"| {name} | {m['n_images']} | {m['n_true_copies']} | {m['n_flagged']} | {_fmt(m['precision'])} | "
                     f"{_fmt(m['recall'])} | {_fmt(m['false_copy_rate_fresh'], 4)} ({m['n_fresh_flagged']}/{m['n_fresh']}) |")
    lines += ["", f"ROC on the evaluation split (copy-distance threshold swept, cosine gate fixed): "
                  f"AUROC = **{_fmt(r['roc_evaluation']['auroc'], 4)}**."]
    if r.get("candidate_recall_evaluation") is not None:
        lines += ["", f"Candidate recall (true copies whose own iconic training image is among the k = {r['k']} "
                      f"CLIP candidates, evaluation split): {r['candidate_recall_evaluation']:.3f}; the recall "
                      "of the verdict cannot exceed it."]
    if r.get("side_ablation_auroc"):
        lines += ["", f"Method `{r['method']}`. AUROC of the same candidates compared at other sides (evaluation split): "
                      + ", ".join(f"{k} px {v:.4f}" for k, v in r["side_ablation_auroc"].items()) + "."]
    if r.get("roc_plot"):
        lines += ["", f"![ROC]({Path(r['roc_plot']).name})"]
    lines += ["", "Per-image best copy distance (evaluation split):", "",
              "| images | n | min | p05 | median | p95 | max |", "|---|---:|---:|---:|---:|---:|---:|"]
    for name, q in r["distance_quantiles"].items():
        lines.append(f"| {name} | {q['n']} | " + " | ".join(_fmt(q.get(k), 4) for k in ("min", "p05", "median", "p95", "max")) + " |")
    if r["simulated"]:
        s = r["simulation"]
        lines += ["", "Simulation: iconic generations are a faithful copy (jitter sd "
                      f"{s['jitter_sd']['copy']}), a loose copy (jitter sd {s['jitter_sd']['loose']}) or a variation "
                      f"(one object moved 0.08-0.25, dropped, recoloured or reshaped) with shares {s['iconic_behaviour']}; "
                      f"every image gets a Gaussian blur of radius {s['blur_radius'][0]}-{s['blur_radius'][1]} px, a "
                      f"per-channel colour offset (sd {s['colour_offset_sd']}) and pixel noise (sd {s['pixel_noise_sd']}); "
                      "fresh prompts are faithful renders of their new scenes. Images the detector reads back "
                      "as the iconic scene, by behaviour (evaluation split): "
                      + ", ".join(f"{k} {v['true_copies']}/{v['n']}" for k, v in s["detector_truth_by_behaviour"].items())
                      + "."]
        b = s["detector_truth"]
        lines += ["", "The same verdicts against the **detector truth** (the iconic scene read back, centres within "
                      "0.03 of the side). Its line falls inside the loose copies' spread (jitter sd 0.02), so it "
                      "calls some visually identical images \"not a copy\": a stricter reading than a reviewer's.", "",
                      "| evaluation split, thresholds | true copies | flagged | precision | recall | false copy rate (fresh) |",
                      "|---|---:|---:|---:|---:|---:|"]
        for name, m in (("chosen", b["evaluation_at_chosen"]), ("module defaults", b["evaluation_at_defaults"])):
            lines.append(f"| {name} | {m['n_true_copies']} | {m['n_flagged']} | {_fmt(m['precision'])} | "
                         f"{_fmt(m['recall'])} | {_fmt(m['false_copy_rate_fresh'], 4)} "
                         f"({m['n_fresh_flagged']}/{m['n_fresh']}) |")
        lines += ["", f"AUROC against the detector truth: {_fmt(b['auroc'], 4)}."]
    return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------- document

#: probe name -> (calibrate(args) -> dict, markdown(dict) -> str)
PROBES = {"memorization": (calibrate_memorization, memorization_markdown)}

DOC_HEAD = """# Audit calibration on the built-in world

Generated by `scripts/calibrate_audit.py` from `docs/audit-calibration/*.json`; do not
edit by hand. Each probe is calibrated where the truth is known (the shapes
world's planted duplicates and watermarks): thresholds are chosen on a
calibration split and every figure below the thresholds is measured on a
separate evaluation split (other seeds).

"""


# --------------------------------------------------------------------------- watermark

WATERMARK_HELDOUT_CLEAN = 3000  # clean heldout rows scored (all ~1000 marked heldout rows are)
WATERMARK_PLANTED = 1000        # train-split PIXSTOCK rows added to the "planted" probe


def _heldout_watermark_images():
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


def calibrate_watermark(args) -> dict:
    """Held-out AUROC of the visible-watermark probe on the planted PIXSTOCK mark, for each kind of
    probe features (EfficientNet-Lite0, the default, and the evaluator CLIP) and two training sets
    (synthetic overlays only, the default, and also train-split planted marks), then the watermark
    reproduction rate of ``stock_cue`` vs ``no_cue`` generations, with ``bench.world.detect_watermark``
    as the truth."""
    from audit.probes.watermark.run import DEFAULT_PROBE_FEATURES, PROBE_ON_CLIP, audit_watermark, probe_extractor_spec
    from audit.probes.watermark.classifier import ProbeConfig, embed_examples, load_or_train_probe, rates_at, roc_auc
    from bench.features import get_extractor
    from bench.world import detect_watermark
    from bench.world.detect import WATERMARK_THRESHOLD

    progress = not args.no_progress
    images, labels = _heldout_watermark_images()
    probes, extractors = {}, {}
    for features in (DEFAULT_PROBE_FEATURES, PROBE_ON_CLIP):
        extractor = get_extractor(probe_extractor_spec(features, "builtin"))
        extractors[features] = extractor.key
        emb, _, _ = embed_examples(((im, 0, 0) for im in images), extractor, total=len(images), progress=progress)
        for name, config in (("synthetic", ProbeConfig()), ("synthetic+planted", ProbeConfig(planted=WATERMARK_PLANTED))):
            probe, _, path = load_or_train_probe(extractor, config, progress=progress)
            s = probe.scores(emb)
            probes[f"{features}, {name}"] = {
                "features": features, "training": name, "file": path.name, "config": config.to_dict(),
                "threshold": round(probe.threshold, 4), "synthetic_val_auroc": probe.info["training"]["val_auroc"],
                "heldout_auroc": round(roc_auc(s, labels), 4),
                **{k: round(v, 4) for k, v in rates_at(s, labels, probe.threshold).items()}}
    result = {"tag": "simulated" if args.simulate else Path(args.model).name.replace(":", "-"),
              "extractors": extractors, "heldout": {"n_marked": int(labels.sum()), "n_clean": int((~labels).sum())},
              "probes": probes, "default": f"{DEFAULT_PROBE_FEATURES}, synthetic", "target_auroc": 0.95}
    if args.simulate:
        result["reproduction"] = None  # needs a generator
        return result

    from bench.generate import generate
    from bench.runspec import RunSpec

    run = OUT / f"watermark-run-{result['tag']}"
    generate(RunSpec(out=str(run), model=args.model, prompts=PROMPT_SET, categories=("stock_cue", "no_cue"),
                     images_per_prompt=args.samples, steps=args.steps, guidance=(args.guidance,), seed=SPLIT_SEEDS["evaluation"],
                     batch_size=args.batch_size), progress=progress)
    from PIL import Image

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
    result["reproduction"] = {"run": _shown(run), "by_category": per_cat, "probe_auroc_vs_truth": aurocs}
    return result


def watermark_markdown(r: dict) -> str:
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


PROBES["watermark"] = (calibrate_watermark, watermark_markdown)


def write_doc(out_dir: Path | None = None, doc: Path | None = None) -> Path:
    """docs/audit-calibration.md from every ``<probe>*.json`` result present."""
    out_dir, doc = out_dir or RESULTS, doc or DOC
    sections = []
    for name, (_, markdown) in PROBES.items():
        for path in sorted(out_dir.glob(f"{name}*.json")):
            sections.append(markdown(json.loads(path.read_text())))
    atomic_write_text(doc, DOC_HEAD + "\n".join(sections))
    return doc


def main(argv=None) -> int:
    global OUT, DOC, RESULTS
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], epilog=__doc__.split("Examples:\n", 1)[1],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--probe", action="append", choices=list(PROBES), help="probe(s) to calibrate (default: all)")
    parser.add_argument("--model", default="builtin:shapes-ldm", help="generator (default builtin:shapes-ldm)")
    parser.add_argument("--simulate", action="store_true", help="simulated generations instead of a model")
    parser.add_argument("--index", type=Path, help="existing index folder (default: build one from --index-source)")
    parser.add_argument("--index-source", default="shapes-laion:2000", help="index source when building (default shapes-laion:2000)")
    parser.add_argument("--samples", type=int, default=8, help="samples per prompt and split (default 8)")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--guidance", type=float, default=7.5)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--k", type=int, default=None, help="CLIP candidates per image (default: the audit's)")
    parser.add_argument("--out", type=Path, default=OUT, help=f"results, runs and index (default {OUT.relative_to(REPO)})")
    parser.add_argument("--doc", type=Path, default=DOC, help=f"document to write (default {DOC.relative_to(REPO)})")
    parser.add_argument("--results", type=Path, default=RESULTS,
                        help=f"folder of the result JSON files the document is made from (default {RESULTS.relative_to(REPO)})")
    parser.add_argument("--no-progress", action="store_true")
    args = parser.parse_args(argv)
    OUT, DOC, RESULTS = args.out.resolve(), args.doc.resolve(), args.results.resolve()
    if args.k is None:
        from audit.probes.memorization.run import DEFAULT_K

        args.k = DEFAULT_K
    try:
        for name in args.probe or list(PROBES):
            result = PROBES[name][0](args)
            path = RESULTS / f"{name}-{result['tag']}.json"
            atomic_write_text(path, json.dumps(result, indent=1) + "\n")
            print(f"wrote {path}")
        print(f"wrote {write_doc()}")
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
