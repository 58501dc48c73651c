#!/usr/bin/env python
"""Measure the built-in models and write ``docs/builtin-model.md``.

    python scripts/make_model_card.py [--per-category 8] [--steps 20]

Generator (``bench/models/builtin/shapes-ldm``, any StableDiffusionPipeline
directory via ``--ldm``): per-category accuracy on the ``shapes`` prompt set,
judged by the exact detector (``bench.world.check``), at guidance 1, 3 and 7.5,
on the first ``--per-category`` prompts of each category (one seed each);
watermark rate with and without the "stock photo of" cue
(``detect_watermark``); iconic captions reproduced (detector spec match with
the training image).  Evaluator CLIP: its ``metrics.json``.  Training time
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


def measure_generator(ldm: Path, per_category: int, steps: int, guidances: list[float]) -> dict:
    import torch
    from diffusers import StableDiffusionPipeline

    from bench.world import check, detect_watermark
    from bench.world.detect import WATERMARK_THRESHOLD

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    pipe = StableDiffusionPipeline.from_pretrained(str(ldm), torch_dtype=torch.float32)
    pipe.set_progress_bar_config(disable=True)
    rows = load_prompts()
    by_cat: dict[str, list[dict]] = defaultdict(list)
    for r in rows:
        if len(by_cat[r["category"]]) < per_category:
            by_cat[r["category"]].append(r)
    picked = [r for rs in by_cat.values() for r in rs]
    acc: dict[str, dict[str, float]] = {}
    for g in guidances:
        imgs = generate(pipe, [r["prompt"] for r in picked], g, steps, seed=0)
        hits: dict[str, list[bool]] = defaultdict(list)
        for r, im in zip(picked, imgs):
            hits[r["category"]].append(bool(check(r["spec"], im)["correct"]))
        acc[str(g)] = {c: sum(v) / len(v) for c, v in hits.items()}
    # Watermark cue (the Getty case): same descriptions with and without the cue.
    base = [r["prompt"] for r in by_cat.get("single_object", [])][:per_category]
    wm = {}
    for name, ps in (("with_cue", ["stock photo of " + p for p in base]), ("without_cue", base)):
        imgs = generate(pipe, ps, 7.5, steps, seed=500)
        wm[name] = sum(detect_watermark(im) >= WATERMARK_THRESHOLD for im in imgs) / max(len(imgs), 1)
    # Iconic captions: does the generation reproduce the training image's scene?
    from bench.world.corpus import ICONIC_NAMES, build_corpus

    df = build_corpus(100_000, seed=0)
    iconic = df[df["dup_group"] >= 0].drop_duplicates("dup_group").sort_values("dup_group")
    caps = list(iconic["caption"])
    imgs = generate(pipe, caps, 7.5, steps, seed=900)
    copies = 0
    for spec_json, im in zip(iconic["spec"], imgs):
        truth = json.loads(spec_json)["objects"]
        spec = {"objects": [{"shape": o["shape"], "colour": o["colour"], "count": 1} for o in truth]}
        copies += bool(check(spec, im)["correct"])
    return {"n_per_category": {c: len(v) for c, v in by_cat.items()}, "steps": steps, "accuracy": acc,
            "watermark_rate": wm, "n_watermark": len(base),
            "iconic_reproduced": copies / len(ICONIC_NAMES), "n_iconic": len(ICONIC_NAMES)}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--ldm", default=str(BUILTIN / "shapes-ldm"))
    ap.add_argument("--clip", default=str(BUILTIN / "shapes-clip"))
    ap.add_argument("--per-category", type=int, default=8)
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--guidance", default="1,3,7.5")
    ap.add_argument("--out", default=str(ROOT / "docs" / "builtin-model.md"))
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args(argv)

    import torch

    torch.set_num_threads(args.threads)
    ldm, clip = Path(args.ldm), Path(args.clip)
    lines = ["# Built-in models", "",
             f"Measured by `scripts/make_model_card.py` on {time.strftime('%Y-%m-%d')}.", ""]

    lines += ["## Generator (`shapes-ldm`)", ""]
    if (ldm / "model_index.json").exists():
        t0 = time.time()
        m = measure_generator(ldm, args.per_category, args.steps, [float(g) for g in args.guidance.split(",")])
        info = json.loads((ldm / "training.json").read_text()) if (ldm / "training.json").exists() else {}
        lines += [f"Directory `{ldm.relative_to(ROOT) if ldm.is_relative_to(ROOT) else ldm}`, "
                  f"{mb(ldm):.1f} MB; trained {info.get('steps', '?')} UNet steps.", "",
                  f"Compositional accuracy judged by the exact detector, first N prompts per category "
                  f"of the `shapes` prompt set, one seed each, {m['steps']} DDIM steps:", "",
                  "| category | N | " + " | ".join(f"guidance {g}" for g in m["accuracy"]) + " |",
                  "|---|---|" + "---|" * len(m["accuracy"])]
        for cat, n in m["n_per_category"].items():
            lines.append(f"| {cat} | {n} | " + " | ".join(f"{m['accuracy'][g][cat]:.2f}" for g in m["accuracy"]) + " |")
        lines += ["", f"- watermark detected with the \"stock photo of\" cue: {m['watermark_rate']['with_cue']:.2f}, "
                  f"without: {m['watermark_rate']['without_cue']:.2f} (N={m['n_watermark']} each, guidance 7.5)",
                  f"- iconic captions whose generation matches the training image's objects: "
                  f"{m['iconic_reproduced']:.2f} (N={m['n_iconic']})",
                  "- role attribute shares in generations vs corpus: measured by the audit issue.",
                  f"- measurement took {time.time() - t0:.0f} s", ""]
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

    lines += ["## Training time and sizes", ""]
    for name in ("generator", "clip"):
        p = ROOT / "build" / "training" / name / "times.json"
        partial = name == "generator" and not (ldm / "model_index.json").exists()
        if p.exists():
            lines.append(f"- {name}{' (partial run, nothing exported)' if partial else ''}: " + ", ".join(f"{k} {v:.0f} s" for k, v in json.loads(p.read_text()).items()))
        else:
            lines.append(f"- {name}: no training log in build/training/{name}")
    total = sum(f.stat().st_size for f in BUILTIN.rglob("*.safetensors")) / 1e6 if BUILTIN.exists() else 0.0
    lines += [f"- weights under bench/models/builtin: {total:.1f} MB (safetensors)", ""]
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("\n".join(lines))
    print(out.read_text())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
