"""False copies on generations: how often the copy audit flags images that copy nothing, by category.

The memorization calibration (``audit.calibration.memorization``) measures the
copy verdict on iconic and fresh prompts.  A user's run holds everything else
too: single objects, watermark-cue captions, role words.  Those simple scenes
lie within the absolute copy distance of *some* simple training image, so the
absolute verdict flagged 17-42% of them in the demo, though the generator
copies none.  This calibration generates every non-iconic category of
``shapes-audit`` (fresh, stock_cue, no_cue, role) and the single-object prompts
of ``shapes``, at least ``MIN_IMAGES`` images per category and split, audits
them against the index, and reports each verdict's false copy rate per
category with a 95% Wilson interval:

* ``absolute``: clip_cosine >= c and copy_distance <= d (the module's defaults);
* ``relative``: clip_cosine >= c and Carlini's relative distance <= r;
* ``both``: all three.

The relative threshold r is chosen on the calibration split (run seed 1): the
largest value on ``RELATIVE_GRID`` at which every negative category's false
copy rate is at most ``CHOICE_RATE``, half the target, and every figure is
reported on the evaluation split (seed 2).  Recall is measured on positives
where the truth is known: the simulated copies of ``audit.calibration.simulate``
(renders of the iconic scenes made as faithful or loose copies; the built-in
generator makes almost none, see docs/builtin-model.md), and the generator's
own iconic images that the world's detector reads back as the iconic scene.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from audit.calibration.config import SPLIT_SEEDS, CalibrationConfig
from bench.errors import UserError

#: The negative categories: (prompt set, category).  None of them is a training image's caption.
NEGATIVES = (("shapes-audit", "fresh"), ("shapes-audit", "stock_cue"), ("shapes-audit", "no_cue"),
             ("shapes-audit", "role"), ("shapes", "single_object"))
#: Images per negative category and split: the issue's minimum, so a 1% rate is 2 images, not a rounding.
MIN_IMAGES = 200
#: The false copy rate every negative category must stay under (the target of issue 12).
TARGET_FALSE_COPY_RATE = 0.01
#: The choice on the calibration split keeps every category at half the target, a margin for the other seed.
CHOICE_RATE = TARGET_FALSE_COPY_RATE / 2
#: Relative thresholds tried; Carlini et al.'s own extraction threshold is not used (see copy_similarity).
RELATIVE_GRID = np.round(np.arange(0.05, 1.001, 0.05), 2)
VERDICTS = ("absolute", "relative", "both")
#: The positive control: a model known to copy (scripts/train_memorized_lora.py).  Its iconic and fresh
#: generations give recall and precision on images a memorizing generator really makes.
MEMORIZING_MODEL = "builtin:shapes-ldm-memorized"


def samples_for(n_prompts: int) -> int:
    """Images per prompt that give at least ``MIN_IMAGES`` images for a category of ``n_prompts`` prompts."""
    return max(1, math.ceil(MIN_IMAGES / n_prompts))


def per_image(table) -> "pd.DataFrame":
    """One row per image of an audit's ``memorization.parquet``: its candidates' cosines, distances and
    relative distances (rank order), and ``n_within``."""
    import pandas as pd

    rows = []
    for image_id, g in table.sort_values("rank").groupby("image_id", sort=True):
        rows.append({"image_id": image_id, "prompt_id": g.prompt_id.iloc[0], "category": g.category.iloc[0],
                     "path": g.path.iloc[0], "cosines": g.clip_cosine.to_numpy(),
                     "distances": g.copy_distance.to_numpy(), "relative": g.relative_distance.to_numpy(),
                     "n_within": int(g.n_within.iloc[0])})
    return pd.DataFrame(rows)


def flagged(images, verdict: str, cosine: float, distance: float, relative: float) -> np.ndarray:
    """Per image: does any candidate pass ``verdict`` at these thresholds (``copy_verdict``'s rule)?"""
    from audit.probes.memorization.run import copy_verdict

    return np.array([bool(copy_verdict(c, d, cosine, distance, r, relative, verdict).any())
                     for c, d, r in zip(images.cosines, images.distances, images.relative)], dtype=bool)


def rate(k: int, n: int) -> dict:
    from bench.intervals import wilson

    low, high = wilson(k, n)
    return {"k": int(k), "n": int(n), "rate": k / n if n else float("nan"), "ci95": [round(low, 4), round(high, 4)]}


def false_copy_rates(negatives: dict, verdict: str, cosine: float, distance: float, relative: float) -> dict:
    """Category -> false copy rate (with its interval) under one verdict."""
    return {cat: rate(int(flagged(images, verdict, cosine, distance, relative).sum()), len(images))
            for cat, images in negatives.items()}


def detection(positives, verdict: str, cosine: float, distance: float, relative: float,
              negatives: dict | None = None) -> dict:
    """Recall on the true copies of ``positives`` (column ``truth``), precision over positives and negatives."""
    hits = flagged(positives, verdict, cosine, distance, relative)
    truth = positives["truth"].to_numpy(dtype=bool)
    false = int((hits & ~truth).sum())
    if negatives:
        false += sum(int(flagged(n, verdict, cosine, distance, relative).sum()) for n in negatives.values())
    tp = int((hits & truth).sum())
    return {"true_copies": int(truth.sum()), "recall": rate(tp, int(truth.sum())), "precision": rate(tp, tp + false)}


def choose_relative(negatives: dict, cosine: float, distance: float, verdict: str = "both") -> float | None:
    """The largest ``RELATIVE_GRID`` value at which every negative category stays at or under ``CHOICE_RATE``."""
    best = None
    for r in RELATIVE_GRID:
        rates = false_copy_rates(negatives, verdict, cosine, distance, float(r))
        if all(v["rate"] <= CHOICE_RATE for v in rates.values()):
            best = float(r)
    return best


def tradeoff(negatives: dict, positives, verdict: str = "both", cosine: float = 0.85,
             distance: float = 0.135) -> list[dict]:
    """Per ``RELATIVE_GRID`` value: recall and precision on ``positives`` and the worst negative category."""
    truth = positives["truth"].to_numpy(dtype=bool)
    out = []
    for r in RELATIVE_GRID:
        hits = flagged(positives, verdict, cosine, distance, float(r))
        rates = {c: float(flagged(n, verdict, cosine, distance, float(r)).mean()) for c, n in negatives.items()}
        worst = max(rates, key=rates.get)
        out.append({"relative": float(r), "recall": float((hits & truth).sum() / max(1, truth.sum())),
                    "precision": float((hits & truth).sum() / max(1, hits.sum())),
                    "worst_false_copy_rate": rates[worst], "worst_category": worst})
    return out


def disagreements(images, prompts_by_id: dict, cosine: float, distance: float, relative: float,
                  sheet: Path, limit: int = 24) -> dict:
    """The memorizing model's iconic images the audit flags but the detector's truth calls no copy: how many,
    which scene fields the detector read differently, and a contact sheet (generation | training render)."""
    from PIL import Image

    from audit.calibration.simulate import scene_of
    from bench.world import compare_scenes, detect, render

    hits = flagged(images, "both", cosine, distance, relative) & ~images["truth"].to_numpy(dtype=bool)
    fields = {f: 0 for f in ("count", "shape", "colour", "size", "position")}
    pairs = []
    for (_, row), hit in zip(images.iterrows(), hits):
        prompt = prompts_by_id.get(row.prompt_id)
        if not hit or prompt is None or prompt.category != "iconic":
            continue
        generated = np.asarray(Image.open(Path(row.run) / row.path).convert("RGB"))
        cmp = compare_scenes(scene_of(prompt), detect(generated))
        for f in fields:
            fields[f] += cmp[f][0] != cmp[f][1]
        if len(pairs) < limit:
            truth = np.asarray(render(scene_of(prompt)).convert("RGB").resize(generated.shape[1::-1]))
            pairs.append(np.concatenate([generated, truth], axis=1))
    if pairs:
        per_row = 6
        pairs += [np.full_like(pairs[0], 255)] * (-len(pairs) % per_row)
        rows = [np.concatenate(pairs[i:i + per_row], axis=1) for i in range(0, len(pairs), per_row)]
        sheet.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(np.concatenate(rows, axis=0)).save(sheet, optimize=True)
    return {"n": int(hits.sum()), "fields_read_differently": fields, "sheet": sheet.name if pairs else None}


def _generate(run: Path, model: str, prompt_set: str, category: str, samples: int, seed: int, gen, progress: bool):
    from bench.generate import generate
    from bench.runspec import RunSpec

    generate(RunSpec(out=str(run), model=model, prompts=prompt_set, categories=(category,),
                     images_per_prompt=samples, steps=gen.steps, guidance=(gen.guidance,), seed=seed,
                     batch_size=gen.batch_size), progress=progress)


def calibrate_false_copies(config: CalibrationConfig) -> dict:
    """Generate, audit and score every negative category and the positives on both splits (a JSON-able dict)."""
    from audit.calibration.memorization import copies_truth, open_or_build_index, run_tag
    from audit.calibration.simulate import COPY_BEHAVIOURS, make_simulated_run, scene_of
    from audit.probes.memorization.run import (DEFAULT_THRESHOLD_COSINE, DEFAULT_THRESHOLD_DISTANCE,
                                               DEFAULT_THRESHOLD_RELATIVE, audit_memorization)
    from bench.prompts import load_prompt_set
    from PIL import Image

    import pandas as pd

    from bench.models.loader import resolve_model

    paths, gen, settings, progress = config.paths, config.generator, config.memorization, config.progress
    try:
        resolve_model(MEMORIZING_MODEL)
        memorizing = True
    except UserError:  # not trained here: the recall on a memorizing model is left out, and says so
        memorizing = False
    index = open_or_build_index(settings.index, settings.index_source, paths.out, progress)
    tag = f"{run_tag(gen)}-{Path(index.folder).name}"
    root = paths.out / "runs" / f"false-copies-{tag}"
    k = settings.resolved_k
    iconic = [p for p in load_prompt_set("shapes-audit").prompts if p.category == "iconic"]
    by_id = {p.id: p for p in iconic}

    def audited(run: Path):
        return per_image(audit_memorization(run, index, k=k, progress=progress).table)

    splits = {}
    for split, seed in SPLIT_SEEDS.items():
        negatives = {}
        for prompt_set, category in NEGATIVES:
            n_prompts = sum(p.category == category for p in load_prompt_set(prompt_set).prompts)
            run = root / split / f"{prompt_set}-{category}"
            _generate(run, gen.model, prompt_set, category, samples_for(n_prompts), seed, gen, progress)
            negatives[category] = audited(run)
        # Positives the truth is known for: the generator's iconic images (detector truth) ...
        run = root / split / "shapes-audit-iconic"
        _generate(run, gen.model, "shapes-audit", "iconic", gen.samples, seed, gen, progress)
        generated = audited(run)
        generated["truth"] = [copies_truth(np.asarray(Image.open(run / path).convert("RGB")), scene_of(by_id[pid]))
                              for path, pid in zip(generated.path, generated.prompt_id)]
        # ... and simulated copies (what the simulation made: faithful and loose copies are copies).
        sim_run = root / split / "simulated-iconic"
        kinds = make_simulated_run(sim_run, iconic, gen.samples, seed, "shapes-audit")
        simulated = audited(sim_run)
        simulated["truth"] = simulated.image_id.map(kinds).str.split(":").str[0].isin(COPY_BEHAVIOURS)
        splits[split] = {"negatives": negatives, "generated": generated, "simulated": simulated}
        if memorizing:
            # The memorizing model's iconic images (detector truth) and its fresh images (never copies).
            parts = []
            for category, samples in (("iconic", gen.samples), ("fresh", samples_for(48))):
                run = root / split / f"memorizing-{category}"
                _generate(run, MEMORIZING_MODEL, "shapes-audit", category, samples, seed, gen, progress)
                images = audited(run)
                images["run"] = str(run)
                images["truth"] = [category == "iconic" and copies_truth(
                    np.asarray(Image.open(run / path).convert("RGB")), scene_of(by_id[pid]))
                    for path, pid in zip(images.path, images.prompt_id)]
                parts.append(images)
            splits[split]["memorizing"] = pd.concat(parts, ignore_index=True)

    cos, dist = DEFAULT_THRESHOLD_COSINE, DEFAULT_THRESHOLD_DISTANCE
    chosen = choose_relative(splits["calibration"]["negatives"], cos, dist)
    rel = chosen if chosen is not None else DEFAULT_THRESHOLD_RELATIVE
    ev = splits["evaluation"]
    verdicts = {}
    for verdict in VERDICTS:
        verdicts[verdict] = {
            "false_copy_rate": false_copy_rates(ev["negatives"], verdict, cos, dist, rel),
            "simulated": detection(ev["simulated"], verdict, cos, dist, rel),
            "generated_iconic": detection(ev["generated"], verdict, cos, dist, rel, ev["negatives"]),
        }
        if memorizing:
            verdicts[verdict]["memorizing"] = detection(ev["memorizing"], verdict, cos, dist, rel)
    n_within = {cat: _quantiles(images.n_within.to_numpy()) for cat, images in ev["negatives"].items()}
    n_within["simulated true copies"] = _quantiles(ev["simulated"].n_within[ev["simulated"].truth].to_numpy())
    return {
        "probe": "false-copies", "tag": tag, "mode": gen.model,
        "index": {"folder": paths.shown(index.folder), "n": int(index.n), "model_key": index.model_key},
        "split_seeds": dict(SPLIT_SEEDS), "k": k, "min_images": MIN_IMAGES,
        "images": {split: {cat: len(v) for cat, v in s["negatives"].items()}
                   | {"generated iconic": len(s["generated"]), "simulated iconic": len(s["simulated"])}
                   for split, s in splits.items()},
        "thresholds": {"clip_cosine": cos, "copy_distance": dist, "relative_distance": rel,
                       "relative_chosen_on_calibration": chosen, "choice_rate": CHOICE_RATE,
                       "module_default_relative": DEFAULT_THRESHOLD_RELATIVE},
        "target_false_copy_rate": TARGET_FALSE_COPY_RATE,
        "calibration_false_copy_rate": {v: false_copy_rates(splits["calibration"]["negatives"], v, cos, dist, rel)
                                        for v in VERDICTS},
        "evaluation": verdicts, "n_within_evaluation": n_within,
        "memorizing_model": MEMORIZING_MODEL if memorizing else None,
        "memorizing_disagreements": disagreements(
            ev["memorizing"], by_id, cos, dist, rel,
            paths.plots / "audit-calibration-memorizing-flagged-not-truth.png") if memorizing else None,
        "tradeoff_evaluation": {
            "simulated": tradeoff(ev["negatives"], ev["simulated"], "both", cos, dist),
            **({"memorizing": tradeoff(ev["negatives"], ev["memorizing"], "both", cos, dist)} if memorizing else {})},
    }


def _quantiles(values: np.ndarray) -> dict:
    if not len(values):
        return {"n": 0}
    q = np.percentile(values, [0, 50, 95, 100])
    return {"n": int(len(values)), "min": float(q[0]), "median": float(q[1]), "p95": float(q[2]), "max": float(q[3])}


def _cell(r: dict) -> str:
    return f"{r['rate']:.3f} [{r['ci95'][0]:.3f}, {r['ci95'][1]:.3f}] ({r['k']}/{r['n']})"


def false_copies_markdown(r: dict) -> str:
    """The document's section for one false-copy calibration."""
    t = r["thresholds"]
    chosen = t["relative_chosen_on_calibration"]
    lines = [f"### Memorization: false copies on generations of `{r['mode']}`", "",
             f"Index: `{r['index']['folder']}` ({r['index']['n']} rows), k = {r['k']}. Negatives: every non-iconic "
             f"category of `shapes-audit` and the single-object prompts of `shapes`, at least {r['min_images']} "
             f"images per category and split (run seeds {r['split_seeds']}); none of them copies a training image. "
             "Rates are per image with 95% Wilson intervals, on the evaluation split.", "",
             f"Thresholds: clip_cosine >= {t['clip_cosine']}, copy_distance <= {t['copy_distance']} (module "
             f"defaults), relative distance <= **{t['relative_distance']}** "
             + (f"(the largest value keeping every category at or under {t['choice_rate']:.1%} on the calibration "
                "split)." if chosen is not None else
                f"(no value kept every category under {t['choice_rate']:.1%} on the calibration split; the module "
                "default is shown)."),
             "", "| category | " + " | ".join(f"{v} verdict" for v in VERDICTS) + " |",
             "|---|" + "---:|" * len(VERDICTS)]
    cats = list(r["evaluation"]["absolute"]["false_copy_rate"])
    for cat in cats:
        lines.append(f"| {cat} | " + " | ".join(_cell(r["evaluation"][v]["false_copy_rate"][cat]) for v in VERDICTS)
                     + " |")
    lines += ["", f"Target: at most {r['target_false_copy_rate']:.0%} in every category.", "",
              "Detection where the truth is known (evaluation split): recall on the simulated copies (renders made "
              "as faithful or loose copies of the iconic scenes) and on the generator's iconic images the world's "
              "detector reads back as the iconic scene; precision of the latter counts every flagged negative.", "",
              "| verdict | simulated recall | simulated precision | generated iconic: true copies | recall | "
              "precision |", "|---|---:|---:|---:|---:|---:|"]
    for v in VERDICTS:
        e = r["evaluation"][v]
        g = e["generated_iconic"]
        lines.append(f"| {v} | {_cell(e['simulated']['recall'])} | {_cell(e['simulated']['precision'])} | "
                     f"{g['true_copies']} | {_cell(g['recall']) if g['true_copies'] else 'n/a'} | "
                     f"{_cell(g['precision']) if g['precision']['n'] else 'n/a'} |")
    if r.get("memorizing_model"):
        lines += ["", f"On the memorizing model `{r['memorizing_model']}` (its iconic images, a copy when the detector "
                  "reads back the iconic scene, and its fresh images, never copies; evaluation split):", "",
                  "| verdict | true copies | recall | precision |", "|---|---:|---:|---:|"]
        for v in VERDICTS:
            m = r["evaluation"][v]["memorizing"]
            lines.append(f"| {v} | {m['true_copies']} | {_cell(m['recall']) if m['true_copies'] else 'n/a'} | "
                         f"{_cell(m['precision']) if m['precision']['n'] else 'n/a'} |")
        d = r.get("memorizing_disagreements") or {}
        if d.get("n"):
            read = ", ".join(f"{k} {v}" for k, v in d["fields_read_differently"].items())
            lines += ["", f"{d['n']} of its iconic images are flagged (criterion both) though the detector's truth calls "
                      f"them no copy. The fields the detector read differently from the training scene: {read}. "
                      "The contact sheet shows them (each pair: generation, then the training render):", "",
                      f"![flagged, not a copy by the detector]({d['sheet']})"]
    else:
        lines += ["", "The memorizing model was not available, so recall on a model that copies is not measured here."]
    for name, curve in (r.get("tradeoff_evaluation") or {}).items():
        lines += ["", f"Trade-off of the relative threshold (criterion both; positives: {name}; evaluation split):", "",
                  "| relative <= | recall | precision | worst negative category |", "|---:|---:|---:|---|"]
        for row in curve:
            lines.append(f"| {row['relative']:.2f} | {row['recall']:.3f} | {row['precision']:.3f} | "
                         f"{row['worst_false_copy_rate']:.3f} ({row['worst_category']}) |")
    lines += ["", "Training images within the copy distance of each image (`n_within`, of the candidate pool; "
              "evaluation split): a common scene matches many, a copy of a duplicated image matches its duplicates.",
              "", "| images | n | min | median | p95 | max |", "|---|---:|---:|---:|---:|---:|"]
    for name, q in r["n_within_evaluation"].items():
        if q.get("n"):
            lines.append(f"| {name} | {q['n']} | {q['min']:.0f} | {q['median']:.0f} | {q['p95']:.0f} | {q['max']:.0f} |")
    return "\n".join(lines) + "\n"
