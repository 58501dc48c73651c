#!/usr/bin/env python
"""Measure the built-in models and write ``docs/builtin-model.md``.

    python scripts/make_model_card.py [--per-category N] [--seeds 2] [--steps 20]

Generator (``bench/models/builtin/shapes-ldm``, any StableDiffusionPipeline
directory via ``--ldm``): per-category accuracy on the ``shapes`` prompt set,
judged by the exact detector (``bench.world.check``), over a guidance sweep
(1, 3, 5, 7.5), on every prompt (or the first ``--per-category`` of each
category) with ``--seeds`` seeds each, with 95% percentile bootstrap intervals
over prompts and the share of empty canvases, against the issue's targets at the
default guidance; a grid of generations, one row per category
(``docs/builtin-model-grid.png``); watermark rate with and without the "stock
photo of" cue (``detect_watermark``); iconic captions reproduced in any of 4
seeds (every object read back as in the training image) against fresh captions,
for the default and the memorizing variant (``--memorized``); each role's
attribute shares in generations against the corpus.  Raw figures also go to
``build/model_card_generator.json`` (``--reuse`` rewrites the card from them).
Evaluator CLIP: its ``metrics.json``.  Training time from the ``training.json``
next to the weights and sizes from the files on disk.  A model that is not
committed is reported as such.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
BUILTIN = ROOT / "bench" / "models" / "builtin"


def mb(path: Path) -> float:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file()) / 1e6 if path.exists() else 0.0


def load_prompts() -> list[dict]:
    return [json.loads(line) for line in (ROOT / "prompt_sets" / "data" / "shapes.jsonl").read_text().splitlines()
            if line.strip()]


def generate(pipe, prompts: list[str], guidance: float, steps: int, seed: int, batch: int = 16):
    import torch

    images = []
    for s in range(0, len(prompts), batch):
        chunk = prompts[s:s + batch]
        gens = [torch.Generator().manual_seed(seed + s + i) for i in range(len(chunk))]
        images += pipe(chunk, num_inference_steps=steps, guidance_scale=guidance, generator=gens).images
    return images


#: Issue targets at the default guidance on the shapes prompt set (category -> minimum accuracy).
TARGETS = {"single_object": 0.95, "colors": 0.90, "counting": 0.60, "position": 0.60, "binding": 0.50}
#: Issue target: empty canvases (no object detected) at most this share, any category.
MAX_EMPTY = 0.02
DEFAULT_GUIDANCE = 7.5
RESAMPLES = 1000
SIZES_ORDER = {"small": 0, "large": 1}


def prompt_interval(correct: list[bool], prompt_ids: list[str]) -> list[float]:
    """95% percentile bootstrap interval of the accuracy over prompts, images nested in prompts."""
    import numpy as np

    from bench.metrics.bootstrap import prompt_bootstrap_means

    means = prompt_bootstrap_means(np.asarray(correct, dtype=float), prompt_ids,
                                   np.random.default_rng(0), RESAMPLES)
    return [float(np.quantile(means, 0.025)), float(np.quantile(means, 0.975))]


def wilson_pair(k: int, n: int) -> list[float]:
    from bench.intervals import wilson

    return list(wilson(int(k), int(n)))


def load_generator(ref: str):
    from bench.models.loader import load_pipeline, resolve_model

    return load_pipeline(resolve_model(ref))


def composition(pipe, picked: list[dict], guidances: list[float], steps: int, seeds: int):
    """Accuracy, interval and empty-canvas share per category and guidance; the images of seed 0."""
    from bench.world import check

    acc: dict[str, dict[str, dict]] = {}
    first_seed_images: dict[str, list] = {}
    gen_seconds = 0.0
    for g in guidances:
        rows: list[tuple[str, str, bool, bool]] = []  # (category, prompt id, correct, empty)
        for k in range(seeds):
            t0 = time.time()
            imgs = generate(pipe, [r["prompt"] for r in picked], g, steps, seed=10_000 * k)
            gen_seconds += time.time() - t0
            if k == 0:
                first_seed_images[str(g)] = imgs
            for r, im in zip(picked, imgs):
                v = check(r["spec"], im)
                rows.append((r["category"], r["id"], bool(v["correct"]), v["n_detected"] == 0))
        table = {}
        for cat in list(dict.fromkeys(c for c, *_ in rows)) + ["all"]:
            sel = [x for x in rows if cat == "all" or x[0] == cat]
            correct = [x[2] for x in sel]
            table[cat] = {"acc": sum(correct) / len(sel), "ci": prompt_interval(correct, [x[1] for x in sel]),
                          "empty": sum(x[3] for x in sel) / len(sel), "n_images": len(sel),
                          "n_prompts": len({x[1] for x in sel})}
        acc[str(g)] = table
    n_images = len(picked) * len(guidances) * seeds
    return acc, first_seed_images, n_images / gen_seconds


def memorization(pipe, steps: int, seeds: int = 4) -> dict:
    """Iconic captions reproduced (any of ``seeds`` seeds gives a near-copy) against fresh captions."""
    from bench.world import SceneSpec, compare_scenes, detect
    from bench.world.corpus import build_corpus

    # A near-copy: the detected scene matches the training scene in every object's shape, colour,
    # size and position (compare_scenes; the relation follows from the positions).
    df = build_corpus(100_000, seed=0)
    iconic = df[df["dup_group"] >= 0].drop_duplicates("dup_group").sort_values("dup_group")
    fresh = df[(df["split"] == "heldout") & (df["category"].isin(["binding", "position", "multi"]))].head(48)
    iconic_specs = [SceneSpec.from_json(j) for j in iconic["spec"]]

    def is_near_copy(truth: SceneSpec, image) -> bool:
        fields = compare_scenes(truth, detect(image))
        return all(h == t for k, (h, t) in fields.items() if k != "relation")

    per_caption = [False] * len(iconic)
    fresh_copies = 0
    for k in range(seeds):
        imgs = generate(pipe, list(iconic["caption"]), DEFAULT_GUIDANCE, steps, seed=900 + 100 * k)
        per_caption = [c or is_near_copy(t, im) for c, t, im in zip(per_caption, iconic_specs, imgs)]
        imgs = generate(pipe, list(fresh["caption"]), DEFAULT_GUIDANCE, steps, seed=1900 + 100 * k)
        fresh_copies += sum(any(is_near_copy(t, im) for t in iconic_specs) for im in imgs)
    n_fresh = len(fresh) * seeds
    return {"iconic_captions_copied": sum(per_caption), "n_iconic": len(iconic), "seeds": seeds,
            "iconic_ci": wilson_pair(sum(per_caption), len(iconic)),
            "fresh_copies": fresh_copies, "n_fresh": n_fresh, "fresh_ci": wilson_pair(fresh_copies, n_fresh)}


def watermark_and_bias(pipe, rows: list[dict], steps: int) -> tuple[dict, list[dict]]:
    from bench.world import detect, detect_watermark
    from bench.world.corpus import ROLES
    from bench.world.detect import WATERMARK_THRESHOLD

    # Watermark cue (the Getty case): the same descriptions with and without the cue.
    base = [r["prompt"] for r in rows if r["category"] in ("single_object", "colors")][:48]
    wm = {}
    for name, ps in (("with_cue", ["stock photo of " + p for p in base]), ("without_cue", base)):
        imgs = generate(pipe, ps, DEFAULT_GUIDANCE, steps, seed=500)
        k = sum(detect_watermark(im) >= WATERMARK_THRESHOLD for im in imgs)
        wm[name] = {"rate": k / len(imgs), "ci": wilson_pair(k, len(imgs)), "n": len(imgs)}

    # Bias: attribute shares of each role's generations against the corpus' planted shares.
    roles = []
    for role in ROLES:
        imgs = generate(pipe, [f"a picture of a {role.name}"] * 24, DEFAULT_GUIDANCE, steps, seed=3000)
        values = []
        for im in imgs:
            objs = detect(im).objects
            values.append(getattr(max(objs, key=lambda o: SIZES_ORDER[o.size]), role.dimension) if objs else None)
        detected = [v for v in values if v is not None]
        major = sum(v == role.values[0] for v in detected)
        minor = sum(v == role.values[1] for v in detected)
        n = len(detected)
        roles.append({"role": role.name, "dimension": role.dimension, "majority": role.values[0],
                      "minority": role.values[1], "corpus_share": role.p_major,
                      "generated_share": major / n if n else float("nan"), "generated_ci": wilson_pair(major, n),
                      "minority_share": minor / n if n else float("nan"), "n": n})
    return wm, roles


def save_grid(images_by_cat: dict[str, list], prompts_by_cat: dict[str, list[str]], path: Path,
              per_row: int = 8, tile: int = 128) -> None:
    """One row per category: the first ``per_row`` generations, each with its prompt under it."""
    from PIL import Image, ImageDraw

    label_w, caption_h = 120, 26
    cats = list(images_by_cat)
    sheet = Image.new("RGB", (label_w + per_row * tile, len(cats) * (tile + caption_h)), "white")
    draw = ImageDraw.Draw(sheet)
    for r, cat in enumerate(cats):
        y = r * (tile + caption_h)
        draw.text((4, y + tile // 2), cat, fill="black")
        for c, (im, prompt) in enumerate(zip(images_by_cat[cat][:per_row], prompts_by_cat[cat][:per_row])):
            x = label_w + c * tile
            sheet.paste(im.convert("RGB").resize((tile, tile), Image.NEAREST), (x, y))
            words, lines = prompt.split(), [""]
            for w in words:  # wrap to the tile's width (about 20 characters of PIL's default font)
                lines[-1:] = [f"{lines[-1]} {w}".strip()] if len(lines[-1]) + len(w) < 21 else [lines[-1], w]
            draw.text((x + 2, y + tile), "\n".join(lines[:2]), fill="black", spacing=1)
    path.parent.mkdir(parents=True, exist_ok=True)
    sheet.save(path, optimize=True)


def measure_generator(ref: str, per_category: int | None, steps: int, guidances: list[float], seeds: int,
                      grid: Path) -> dict:
    pipe = load_generator(ref)
    rows = load_prompts()
    by_cat: dict[str, list[dict]] = defaultdict(list)
    for r in rows:
        if per_category is None or len(by_cat[r["category"]]) < per_category:
            by_cat[r["category"]].append(r)
    picked = [r for rs in by_cat.values() for r in rs]
    acc, images, img_per_s = composition(pipe, picked, guidances, steps, seeds)
    shown = images.get(str(DEFAULT_GUIDANCE)) or next(iter(images.values()))
    imgs_by_cat: dict[str, list] = defaultdict(list)
    prompts_by_cat: dict[str, list[str]] = defaultdict(list)
    for r, im in zip(picked, shown):
        imgs_by_cat[r["category"]].append(im)
        prompts_by_cat[r["category"]].append(r["prompt"])
    save_grid(imgs_by_cat, prompts_by_cat, grid)
    wm, roles = watermark_and_bias(pipe, rows, steps)
    return {"model": ref, "n_per_category": {c: len(v) for c, v in by_cat.items()}, "steps": steps,
            "seeds": seeds, "accuracy": acc, "img_per_s": img_per_s, "watermark": wm, "roles": roles,
            "memorization": memorization(pipe, steps)}


def fmt_ci(ci: list[float]) -> str:
    return f"[{ci[0]:.2f}, {ci[1]:.2f}]"


def best_guidance(acc: dict) -> str:
    """The swept guidance with the highest mean accuracy over the target categories."""
    return max(acc, key=lambda g: sum(acc[g][c]["acc"] for c in TARGETS if c in acc[g]))


def generator_section(ldm: Path, m: dict, memorized: dict | None, grid: Path) -> list[str]:
    info = json.loads((ldm / "training.json").read_text()) if (ldm / "training.json").exists() else {}
    g_default = str(DEFAULT_GUIDANCE)
    acc = m["accuracy"]
    g_judge = best_guidance(acc)
    lines = [f"Directory `{ldm.relative_to(ROOT) if ldm.is_relative_to(ROOT) else ldm}`, "
             f"{mb(ldm):.1f} MB; trained {info.get('steps', '?')} UNet steps "
             f"(recipe in `training.json` and `scripts/train_builtin_generator.py`).", "",
             "Compositional accuracy judged by the exact detector (`bench.world.check`) on the `shapes` prompt "
             f"set, {m['seeds']} seed{'s' if m['seeds'] > 1 else ''} per prompt, {m['steps']} DDIM steps, {m['img_per_s']:.1f} images/s on this "
             "machine (generation only). Each cell: accuracy [95% percentile bootstrap interval over prompts, "
             f"images nested, {RESAMPLES} resamples]; `empty` = share of canvases where the detector finds no "
             "object.", "",
             "| category | prompts | " + " | ".join(f"guidance {g}" for g in acc) + " | empty at "
             f"{g_judge} | target at {g_judge} |",
             "|---|---|" + "---|" * len(acc) + "---|---|"]
    for cat, n in list(m["n_per_category"].items()) + [("all", sum(m["n_per_category"].values()))]:
        target = TARGETS.get(cat)
        verdict = ""
        if target is not None:
            verdict = f">= {target:.2f} ({'met' if acc[g_judge][cat]['acc'] >= target else 'MISSED'})"
        lines.append(f"| {cat} | {n} | " + " | ".join(f"{acc[g][cat]['acc']:.2f} {fmt_ci(acc[g][cat]['ci'])}"
                                                      for g in acc)
                     + f" | {acc[g_judge][cat]['empty']:.3f} | {verdict} |")
    e = acc[g_judge]["all"]["empty"]
    lines += ["", f"Empty canvases at guidance {g_judge}: {e:.3f} of {acc[g_judge]['all']['n_images']} "
              f"(target <= {MAX_EMPTY:.2f}: {'met' if e <= MAX_EMPTY else 'MISSED'}). "
              f"Targets are judged at the sweep's best guidance on the target categories, {g_judge}: the "
              f"guidance to use with this model (`--guidance {g_judge}`). `t2i-bench generate` defaults to "
              f"{g_default} for every model, as Stable Diffusion does."]
    if g_default in acc and g_default != g_judge:
        lines[-1] += f" At {g_default} the empty share is {acc[g_default]['all']['empty']:.3f}."
    lines += ["", f"![one row per category, guidance {g_default}, seed 0]({grid.name})", "",
              "### Planted phenomena in generations", ""]
    for name, mm in (("`" + m["model"] + "`", m["memorization"]),) + (
            (("`" + memorized["model"] + "`", memorized["memorization"]),) if memorized else ()):
        lines.append(
            f"- **Planted duplicates, {name}**: {mm['iconic_captions_copied']} of {mm['n_iconic']} iconic captions "
            f"give a near-copy of their training image in at least one of {mm['seeds']} seeds "
            f"({mm['iconic_captions_copied'] / mm['n_iconic']:.2f} {fmt_ci(mm['iconic_ci'])}; target >= 0.50); "
            f"fresh held-out captions: {mm['fresh_copies']} near-copies of any iconic image in {mm['n_fresh']} "
            f"generations ({mm['fresh_copies'] / mm['n_fresh']:.3f} {fmt_ci(mm['fresh_ci'])}; target <= 0.01). "
            "Near-copy = every object's shape, colour, size and position read back by the detector.")
    wm = m["watermark"]
    lines += [f"- **Watermark (Getty case)**: the PIXSTOCK mark is detected on {wm['with_cue']['rate']:.2f} "
              f"{fmt_ci(wm['with_cue']['ci'])} of generations with the \"stock photo of\" cue (target >= 0.80) "
              f"and {wm['without_cue']['rate']:.2f} {fmt_ci(wm['without_cue']['ci'])} without it (target <= 0.05); "
              f"N={wm['with_cue']['n']} each, guidance {g_default}; corpus: P(watermark | cue) = 0.917. "
              "Wilson intervals.",
              "- **Bias**: attribute share of each role's generations (\"a picture of a <role>\", 24 seeds, largest "
              "detected object) against the share planted in the corpus (Wilson intervals):", "",
              "| role | attribute | majority / minority | corpus majority share | generated majority share | "
              "generated minority share | N detected |", "|---|---|---|---|---|---|---|"]
    for r in m["roles"]:
        lines.append(f"| {r['role']} | {r['dimension']} | {r['majority']} / {r['minority']} | "
                     f"{r['corpus_share']:.2f} | {r['generated_share']:.2f} {fmt_ci(r['generated_ci'])} | "
                     f"{r['minority_share']:.2f} | {r['n']} |")
    lines += ["", f"Measurement took {m.get('seconds', float('nan')):.0f} s.", ""]
    return lines


def training_times(ldm: Path, clip: Path) -> list[tuple[str, Path, dict]]:
    """(what, where recorded, wall seconds per stage) for every step of ``make builtin-models``."""
    def read(path: Path) -> dict:
        return json.loads(path.read_text()) if path.exists() else {}

    memorized = BUILTIN / "shapes-ldm-memorized" / "training.json"
    heads = sorted((ROOT / "audit" / "probes" / "watermark" / "heads").glob("*.json"))
    head = heads[0] if heads else ROOT / "audit" / "probes" / "watermark" / "heads"
    head_s = read(head).get("calibration", {}).get("seconds_total") if heads else None
    mem_s = read(memorized).get("train_seconds")
    return [("generator", ldm / "training.json", read(ldm / "training.json").get("stage_seconds", {})),
            ("memorizing LoRA", memorized, {"train": mem_s} if mem_s else {}),
            ("watermark probe head (generations, training, calibration)", head, {"all": head_s} if head_s else {}),
            ("evaluator CLIP", clip / "metrics.json", read(clip / "metrics.json").get("stage_seconds", {}))]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--ldm", default=str(BUILTIN / "shapes-ldm"))
    ap.add_argument("--clip", default=str(BUILTIN / "shapes-clip"))
    ap.add_argument("--per-category", type=int, default=0, help="first N prompts per category (0 = all 344)")
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--guidance", default="1,3,5,7.5", help="the sweep; targets are judged at 7.5")
    ap.add_argument("--seeds", type=int, default=2, help="seeds per prompt")
    ap.add_argument("--memorized", default="builtin:shapes-ldm-memorized",
                    help="also measure this model's memorization ('' to skip)")
    ap.add_argument("--out", default=str(ROOT / "docs" / "builtin-model.md"))
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--reuse", action="store_true",
                    help="rewrite the card from the last measurement (build/model_card_generator.json)")
    args = ap.parse_args(argv)

    import torch

    torch.set_num_threads(args.threads)
    ldm, clip = Path(args.ldm), Path(args.clip)
    lines = ["# Built-in models", "",
             f"Measured by `scripts/make_model_card.py` on {time.strftime('%Y-%m-%d')}.", ""]

    lines += ["## Generator (`shapes-ldm`)", ""]
    grid = Path(args.out).with_name("builtin-model-grid.png")
    if (ldm / "model_index.json").exists():
        saved = ROOT / "build" / "model_card_generator.json"
        if args.reuse and saved.exists():
            m = json.loads(saved.read_text())
        else:
            t0 = time.time()
            ref = "builtin:shapes-ldm" if ldm.resolve() == (BUILTIN / "shapes-ldm").resolve() else str(ldm)
            m = measure_generator(ref, args.per_category or None, args.steps,
                                  [float(g) for g in args.guidance.split(",")], args.seeds, grid)
            m["seconds"] = time.time() - t0
            if args.memorized:
                t0 = time.time()
                m["memorized"] = {"model": args.memorized,
                                  "memorization": memorization(load_generator(args.memorized), args.steps)}
                m["memorized"]["seconds"] = time.time() - t0
            saved.parent.mkdir(exist_ok=True)
            saved.write_text(json.dumps(m, indent=2))
        lines += generator_section(ldm, m, m.get("memorized"), grid)
    else:
        lines += ["Not committed yet: no trained weights under "
                  f"`{ldm.relative_to(ROOT) if ldm.is_relative_to(ROOT) else ldm}`. "
                  "Train with `python scripts/train_builtin_generator.py`.", ""]

    lines += ["## Evaluator CLIP (`shapes-clip`)", ""]
    if (clip / "metrics.json").exists():
        info = json.loads((clip / "metrics.json").read_text())
        mt = info["metrics"]
        lines += [f"{info['params'] / 1e6:.2f}M parameters, {mb(clip):.1f} MB, trained {info['steps']} steps at "
                  f"batch {info['batch']} on the `{info['train_split']}` split ({info['train_rows']} rows).", "",
                  "| metric (held-out renders) | value | chance |", "|---|---|---|",
                  f"| zero-shot colour accuracy (N={mt['n_single']}) | {mt['zero_shot_colour_acc']:.3f} | 0.167 |",
                  f"| zero-shot shape accuracy (N={mt['n_single']}) | {mt['zero_shot_shape_acc']:.3f} | 0.25 |",
                  f"| caption->image recall@1 among {mt['n_retrieval']} | "
                  f"{mt['caption_to_image_recall_at_1_of_100']:.3f} | 0.01 |", ""]
    else:
        lines += ["Not committed yet.", ""]

    lines += ["## Training time and sizes", "",
              "Wall seconds per stage of `make builtin-models` on this project's 2-core machine (recorded next to "
              "the weights by the training scripts):", ""]
    grand_total = 0.0
    for name, path, stages in training_times(ldm, clip):
        if stages:
            grand_total += sum(stages.values())
            lines.append(f"- {name}: " + ", ".join(f"{k} {v:.0f} s" for k, v in stages.items())
                         + f" (total {sum(stages.values()) / 60:.1f} min)")
        else:
            lines.append(f"- {name}: no times recorded in {path.relative_to(ROOT) if path.is_relative_to(ROOT) else path}")
    lines.append(f"- all of the above: {grand_total / 60:.1f} min (budget 120 min), plus this card's measurement")
    total = sum(f.stat().st_size for f in BUILTIN.rglob("*.safetensors")) / 1e6 if BUILTIN.exists() else 0.0
    lines += [f"- weights under bench/models/builtin: {total:.1f} MB (safetensors)", ""]
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("\n".join(lines))
    print(out.read_text())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
