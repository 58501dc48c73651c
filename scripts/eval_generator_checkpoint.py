#!/usr/bin/env python
"""Judge a generator training checkpoint quickly, for recipe ablations.

    python scripts/eval_generator_checkpoint.py build/training/abl-X [--per-category 24]

Loads the EMA weights of ``unet_final.pt`` (or the latest ``unet_ckpt.pt``) of a
``scripts/train_builtin_generator.py`` output folder, with the configuration in its
``args.json``, and generates the first ``--per-category`` prompts of each target
category of the ``shapes`` prompt set (one seed, 20 DDIM steps) at each guidance.
The exact detector judges them (``bench.world.check``); accuracy per category with a
95% Wilson interval, the share of empty canvases, and the iconic captions reproduced
(one seed each) go to ``eval_<step>.json`` in the folder and to stdout.
The model card (``scripts/make_model_card.py``) stays the measurement of record.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import defaultdict
from pathlib import Path
from types import SimpleNamespace

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "scripts"))

CATEGORIES = ("single_object", "colors", "counting", "position", "binding")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("folder")
    ap.add_argument("--per-category", type=int, default=24)
    ap.add_argument("--guidance", default="5,7.5")
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args(argv)

    import torch
    from diffusers import UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    import train_builtin_generator as T
    from make_model_card import generate, load_prompts
    from bench.intervals import wilson as wilson_interval
    from bench.world import SceneSpec, check, compare_scenes, detect
    from bench.world.corpus import build_corpus

    torch.set_num_threads(args.threads)
    out = Path(args.folder)
    if not (out / "args.json").exists():
        print(f"error: {out} has no args.json; pass a train_builtin_generator.py output folder", file=sys.stderr)
        return 2
    targs = {**vars(T.parse_args([])), **json.loads((out / "args.json").read_text())}
    targs = SimpleNamespace(**targs)
    src = out / "unet_final.pt" if (out / "unet_final.pt").exists() else out / "unet_ckpt.pt"
    state = torch.load(src, weights_only=False)
    text = CLIPTextModel(CLIPTextConfig(**T.text_config(targs.text_hidden)))
    text.load_state_dict(state["ema_text"])
    unet = UNet2DConditionModel(**T.unet_config(targs))
    unet.load_state_dict(state["ema_unet"])
    vae = T.build_vae(targs)
    vae.load_state_dict(torch.load(out / "vae_norm.pt"))
    pipe = T.make_pipeline(vae.eval(), unet.eval(), text.eval(), T.build_tokenizer(out))
    pipe.set_progress_bar_config(disable=True)

    by_cat: dict[str, list[dict]] = defaultdict(list)
    for r in load_prompts():
        if r["category"] in CATEGORIES and len(by_cat[r["category"]]) < args.per_category:
            by_cat[r["category"]].append(r)
    picked = [r for c in CATEGORIES for r in by_cat[c]]
    result = {"step": int(state["step"]), "source": src.name, "per_category": args.per_category,
              "guidance": {}}
    for g in (float(x) for x in args.guidance.split(",")):
        imgs = generate(pipe, [r["prompt"] for r in picked], g, 20, seed=0)
        hits: dict[str, list[bool]] = defaultdict(list)
        empty = 0
        for r, im in zip(picked, imgs):
            v = check(r["spec"], im)
            hits[r["category"]].append(bool(v["correct"]))
            empty += v["n_detected"] == 0
        row = {}
        for c, v in hits.items():
            lo, hi = wilson_interval(sum(v), len(v))
            row[c] = {"acc": round(sum(v) / len(v), 3), "ci": [round(lo, 3), round(hi, 3)], "n": len(v)}
        row["empty"] = round(empty / len(picked), 3)
        result["guidance"][str(g)] = row
        print(f"step {result['step']} guidance {g}: " + ", ".join(
            f"{c} {row[c]['acc']:.2f}" for c in CATEGORIES) + f", empty {row['empty']:.2f}", flush=True)

    df = build_corpus(100_000, seed=0)
    iconic = df[df["dup_group"] >= 0].drop_duplicates("dup_group").sort_values("dup_group")
    imgs = generate(pipe, list(iconic["caption"]), 7.5, 20, seed=900)
    copies = 0
    for spec, im in zip(iconic["spec"], imgs):
        fields = compare_scenes(SceneSpec.from_json(spec), detect(im))
        copies += all(h == t for k, (h, t) in fields.items() if k != "relation")
    result["iconic_near_copies"] = f"{copies}/{len(iconic)}"
    print(f"step {result['step']}: iconic near-copies {copies}/{len(iconic)} (1 seed, guidance 7.5)")
    (out / f"eval_{result['step']:06d}.json").write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
