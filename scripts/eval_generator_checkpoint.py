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


def conditioning_gain(out: Path, unet, text, T, per_category: int = 256) -> dict[str, list[float]]:
    """How much the caption lowers the denoising loss, per corpus category: the mean v-prediction
    MSE with the empty caption minus with the row's caption, on the same training latents,
    timesteps and noise (seeded).  A low-variance read of what the text conditioning has
    learnt (position and binding need the caption's word order), for comparing recipes at
    equal steps when the detector's accuracies are still near zero.  Each value comes with the
    half-width of its 95% normal interval over the rows."""
    import numpy as np
    import pandas as pd
    import torch

    lat = torch.load(out / "latents.pt")
    ids_all = torch.from_numpy(np.load(out / "data" / "input_ids.npy")).long()
    cats = pd.read_parquet(out / "data" / "rows.parquet", columns=["category"])["category"].to_numpy()
    tok = T.build_tokenizer(out)
    empty = tok([T.EMPTY], padding="max_length", max_length=77, return_tensors="pt")["input_ids"]
    acp = T.make_scheduler("ddpm").alphas_cumprod
    g = torch.Generator().manual_seed(1234)
    gains = {}
    with torch.no_grad():
        for cat in ("single", "counting", "position", "binding", "size", "iconic"):
            idx = torch.from_numpy(np.flatnonzero(cats == cat)[:per_category])
            if len(idx) == 0:
                continue
            z0 = lat["mean"][idx].float()
            t = torch.randint(0, len(acp), (len(idx),), generator=g)
            noise = torch.randn(z0.shape, generator=g)
            a = acp[t].view(-1, 1, 1, 1)
            zt, target = a.sqrt() * z0 + (1 - a).sqrt() * noise, a.sqrt() * noise - (1 - a).sqrt() * z0
            err = {}
            for name, ids in (("cond", ids_all[idx]), ("uncond", empty.expand(len(idx), -1))):
                pred = unet(zt, t, encoder_hidden_states=text(ids)[0]).sample
                err[name] = ((pred - target) ** 2).mean(dim=(1, 2, 3))
            diff = (err["uncond"] - err["cond"]).double()
            half = 1.96 * diff.std().item() / len(diff) ** 0.5  # normal interval over rows
            gains[cat] = [round(diff.mean().item(), 5), round(half, 5)]
    return gains


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("folder")
    ap.add_argument("--per-category", type=int, default=24)
    ap.add_argument("--guidance", default="5,7.5")
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args(argv)

    import torch
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
    targs = SimpleNamespace(**{**vars(T.parse_args([])), **json.loads((out / "args.json").read_text())})
    src, state, vae, unet, text = T.load_trained(targs, out)
    pipe = T.make_pipeline(vae, unet, text, T.build_tokenizer(out))
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

    result["conditioning_gain"] = conditioning_gain(out, unet, text, T)
    print(f"step {result['step']}: conditioning gain (v-MSE without caption - with) " + ", ".join(
        f"{c} {v:.4f} +- {h:.4f}" for c, (v, h) in result["conditioning_gain"].items()), flush=True)

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
