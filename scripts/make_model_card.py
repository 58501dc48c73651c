#!/usr/bin/env python
"""Measure the built-in models and write ``docs/builtin-model.md``.

    python scripts/make_model_card.py [--per-category N] [--steps 20]

Generator (``bench/models/builtin/shapes-ldm``, any StableDiffusionPipeline
directory via ``--ldm``): per-category accuracy on the ``shapes`` prompt set,
judged by the exact detector (``bench.world.check``), at guidance 1, 3 and 7.5,
on every prompt (or the first ``--per-category`` of each category), one seed
each, against the issue's targets at the default guidance; watermark rate with
and without the "stock photo of" cue (``detect_watermark``); iconic captions
reproduced (every object read back as in the training image) against fresh
captions; each role's attribute shares in generations against the corpus.
Raw figures also go to ``build/model_card_generator.json``.  Evaluator CLIP:
its ``metrics.json``.  Training time
from ``build/training/*/times.json`` and sizes from the files on disk.
A model that is not committed is reported as such.
"""

from __future__ import annotations

import argparse
import json
import os
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
DEFAULT_GUIDANCE = 7.5


def measure_generator(ldm: Path, per_category: int | None, steps: int, guidances: list[float]) -> dict:
    import numpy as np
    import torch
    from diffusers import StableDiffusionPipeline

    from bench.world import SceneSpec, check, compare_scenes, detect, detect_watermark
    from bench.world.corpus import ICONIC_NAMES, ROLES, build_corpus
    from bench.world.detect import WATERMARK_THRESHOLD

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    pipe = StableDiffusionPipeline.from_pretrained(str(ldm), torch_dtype=torch.float32)
    pipe.set_progress_bar_config(disable=True)
    rows = load_prompts()
    by_cat: dict[str, list[dict]] = defaultdict(list)
    for r in rows:
        if per_category is None or len(by_cat[r["category"]]) < per_category:
            by_cat[r["category"]].append(r)
    picked = [r for rs in by_cat.values() for r in rs]
    acc: dict[str, dict[str, float]] = {}
    gen_seconds = 0.0
    for g in guidances:
        t0 = time.time()
        imgs = generate(pipe, [r["prompt"] for r in picked], g, steps, seed=0)
        gen_seconds += time.time() - t0
        hits: dict[str, list[bool]] = defaultdict(list)
        for r, im in zip(picked, imgs):
            hits[r["category"]].append(bool(check(r["spec"], im)["correct"]))
        acc[str(g)] = {c: sum(v) / len(v) for c, v in hits.items()}
        acc[str(g)]["all"] = sum(sum(v) for v in hits.values()) / len(picked)
    n_images = len(picked) * len(guidances)

    # Watermark cue (the Getty case): the same descriptions with and without the cue.
    base = [r["prompt"] for r in rows if r["category"] == "single_object"][:24]
    wm = {}
    for name, ps in (("with_cue", ["stock photo of " + p for p in base]), ("without_cue", base)):
        imgs = generate(pipe, ps, DEFAULT_GUIDANCE, steps, seed=500)
        wm[name] = sum(detect_watermark(im) >= WATERMARK_THRESHOLD for im in imgs) / max(len(imgs), 1)

    # Planted duplicates: does an iconic caption reproduce its training image?  A near-copy is
    # a generation whose detected scene matches the training scene in every object's shape,
    # colour, size and position (compare_scenes); fresh captions of other scenes are the control.
    df = build_corpus(100_000, seed=0)
    iconic = df[df["dup_group"] >= 0].drop_duplicates("dup_group").sort_values("dup_group")
    fresh = df[(df["split"] == "heldout") & (df["category"].isin(["binding", "position", "multi"]))].head(48)
    iconic_specs = [SceneSpec.from_json(j) for j in iconic["spec"]]

    def is_near_copy(truth: SceneSpec, image) -> bool:
        fields = compare_scenes(truth, detect(image))
        return all(h == t for k, (h, t) in fields.items() if k != "relation")

    seeds = 3
    copies = []
    for k in range(seeds):
        imgs = generate(pipe, list(iconic["caption"]), DEFAULT_GUIDANCE, steps, seed=900 + 100 * k)
        copies += [is_near_copy(t, im) for t, im in zip(iconic_specs, imgs)]
    imgs = generate(pipe, list(fresh["caption"]), DEFAULT_GUIDANCE, steps, seed=1900)
    fresh_copies = [any(is_near_copy(t, im) for t in iconic_specs) for im in imgs]

    # Bias: attribute shares of each role's generations against the corpus' planted shares.
    roles = []
    n_role = 24
    for role in ROLES:
        imgs = generate(pipe, [f"a picture of a {role.name}"] * n_role, DEFAULT_GUIDANCE, steps, seed=3000)
        values = []
        for im in imgs:
            objs = detect(im).objects
            values.append(getattr(max(objs, key=lambda o: SIZES_ORDER[o.size]), role.dimension) if objs else None)
        detected = [v for v in values if v is not None]
        share = (sum(v == role.values[0] for v in detected) / len(detected)) if detected else float("nan")
        roles.append({"role": role.name, "dimension": role.dimension, "majority": role.values[0],
                      "minority": role.values[1], "corpus_share": role.p_major, "generated_share": share,
                      "minority_share": (sum(v == role.values[1] for v in detected) / len(detected))
                      if detected else float("nan"), "n": len(detected)})
    return {"n_per_category": {c: len(v) for c, v in by_cat.items()}, "steps": steps, "accuracy": acc,
            "img_per_s": n_images / gen_seconds, "watermark_rate": wm, "n_watermark": len(base),
            "iconic_reproduced": float(np.mean(copies)), "n_iconic": len(ICONIC_NAMES), "iconic_seeds": seeds,
            "fresh_copy_rate": float(np.mean(fresh_copies)), "n_fresh": len(fresh_copies), "roles": roles}


SIZES_ORDER = {"small": 0, "large": 1}


def generator_section(ldm: Path, m: dict, seconds: float) -> list[str]:
    info = json.loads((ldm / "training.json").read_text()) if (ldm / "training.json").exists() else {}
    g_default = str(DEFAULT_GUIDANCE)
    lines = [f"Directory `{ldm.relative_to(ROOT) if ldm.is_relative_to(ROOT) else ldm}`, "
             f"{mb(ldm):.1f} MB; trained {info.get('steps', '?')} UNet steps "
             f"(recipe in `training.json` and `scripts/train_builtin_generator.py`).", "",
             "Compositional accuracy judged by the exact detector (`bench.world.check`) on the `shapes` prompt "
             f"set, one seed per prompt, {m['steps']} DDIM steps, {m['img_per_s']:.1f} images/s on this machine:", "",
             "| category | N | " + " | ".join(f"guidance {g}" for g in m["accuracy"]) + " | target |",
             "|---|---|" + "---|" * len(m["accuracy"]) + "---|"]
    for cat, n in list(m["n_per_category"].items()) + [("all", sum(m["n_per_category"].values()))]:
        target = TARGETS.get(cat)
        verdict = ""
        if target is not None and g_default in m["accuracy"]:
            verdict = f">= {target:.2f} ({'met' if m['accuracy'][g_default][cat] >= target else 'MISSED'})"
        lines.append(f"| {cat} | {n} | " + " | ".join(f"{m['accuracy'][g][cat]:.2f}" for g in m["accuracy"])
                     + f" | {verdict} |")
    lines += ["", "Targets are judged at the default guidance, 7.5.", "",
              "### Planted phenomena in generations", "",
              f"- **Planted duplicates**: {m['iconic_reproduced']:.2f} of iconic-caption generations are near-copies "
              f"of their training image ({m['n_iconic']} captions x {m['iconic_seeds']} seeds; near-copy = every "
              f"object's shape, colour, size and position read back by the detector), against "
              f"{m['fresh_copy_rate']:.2f} of {m['n_fresh']} fresh held-out captions that match any iconic image.",
              f"- **Watermark (Getty case)**: the PIXSTOCK mark is detected on {m['watermark_rate']['with_cue']:.2f} "
              f"of generations with the \"stock photo of\" cue and {m['watermark_rate']['without_cue']:.2f} without "
              f"it (N={m['n_watermark']} each, guidance 7.5; corpus: P(watermark | cue) = 0.917).",
              "- **Bias**: attribute share of each role's generations (\"a picture of a <role>\", largest detected "
              "object) against the share planted in the corpus:", "",
              "| role | attribute | majority / minority | corpus majority share | generated majority share | "
              "generated minority share | N detected |", "|---|---|---|---|---|---|---|"]
    for r in m["roles"]:
        lines.append(f"| {r['role']} | {r['dimension']} | {r['majority']} / {r['minority']} | "
                     f"{r['corpus_share']:.2f} | {r['generated_share']:.2f} | {r['minority_share']:.2f} | {r['n']} |")
    lines += ["", f"Measurement took {seconds:.0f} s.", ""]
    return lines


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--ldm", default=str(BUILTIN / "shapes-ldm"))
    ap.add_argument("--clip", default=str(BUILTIN / "shapes-clip"))
    ap.add_argument("--per-category", type=int, default=0, help="first N prompts per category (0 = all 344)")
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--guidance", default="1,3,7.5")
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
    if (ldm / "model_index.json").exists():
        t0 = time.time()
        saved = ROOT / "build" / "model_card_generator.json"
        if args.reuse and saved.exists():
            m = json.loads(saved.read_text())
        else:
            per_cat = args.per_category or None
            m = measure_generator(ldm, per_cat, args.steps, [float(g) for g in args.guidance.split(",")])
            m["seconds"] = time.time() - t0
            saved.parent.mkdir(exist_ok=True)
            saved.write_text(json.dumps(m, indent=2))
        lines += generator_section(ldm, m, m.get("seconds", time.time() - t0))
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
    for name, path in (("generator", ldm / "training.json"), ("evaluator CLIP", clip / "metrics.json")):
        stages = json.loads(path.read_text()).get("stage_seconds", {}) if path.exists() else {}
        if stages:
            lines.append(f"- {name}: " + ", ".join(f"{k} {v:.0f} s" for k, v in stages.items())
                         + f" (total {sum(stages.values()) / 60:.1f} min)")
        else:
            lines.append(f"- {name}: no stage times recorded in {path.relative_to(ROOT) if path.is_relative_to(ROOT) else path}")
    total = sum(f.stat().st_size for f in BUILTIN.rglob("*.safetensors")) / 1e6 if BUILTIN.exists() else 0.0
    lines += [f"- weights under bench/models/builtin: {total:.1f} MB (safetensors)", ""]
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("\n".join(lines))
    print(out.read_text())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
