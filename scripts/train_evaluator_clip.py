#!/usr/bin/env python
"""Train the built-in evaluator CLIP (open_clip, custom config) on shapes-laion.

    python scripts/train_evaluator_clip.py

Contrastive (InfoNCE) training on the corpus's ``evaluator`` split, which is
disjoint from the generator's ``train`` split; measured on ``heldout`` renders:
zero-shot colour accuracy and zero-shot shape accuracy on single-object rows,
and caption->image recall@1 among 100 candidates.  Seeded; checkpoints every
few minutes to ``build/training/clip`` and resumes from them; the loss curve
goes to ``build/training/clip/loss.csv``.  Writes
``bench/models/builtin/shapes-clip/`` (config JSONs, fp16 safetensors, README).
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

MODEL_NAME = "shapes-clip"
IMAGE_SIZE = 64
MODEL_CFG = {
    "embed_dim": 128,
    "vision_cfg": {"image_size": IMAGE_SIZE, "layers": 4, "width": 128, "head_width": 32,
                   "patch_size": 8, "mlp_ratio": 2.0},
    "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 64, "heads": 4, "layers": 3,
                 "mlp_ratio": 4.0},
}
COLOURS = ("red", "orange", "yellow", "green", "blue", "purple")
SHAPES = ("circle", "square", "triangle", "star")


def log(out: Path, msg: str) -> None:
    line = f"{time.strftime('%H:%M:%S')} {msg}"
    print(line, flush=True)
    with open(out / "train.log", "a") as f:
        f.write(line + "\n")


def render_rows(rows) -> np.ndarray:
    from bench.world import render_row

    return np.stack([np.asarray(render_row({"spec": s, "width": IMAGE_SIZE})) for s in rows["spec"]])


def normalise(images_u8, mean, std):
    import torch

    x = torch.from_numpy(np.ascontiguousarray(images_u8)).permute(0, 3, 1, 2).float() / 255.0
    return (x - torch.tensor(mean).view(1, 3, 1, 1)) / torch.tensor(std).view(1, 3, 1, 1)


def load_data(out: Path, args):
    """Evaluator-split images for training, heldout rows for measurement (cached)."""
    cache = out / "data.npz"
    if cache.exists():
        d = np.load(cache, allow_pickle=True)
        return {k: d[k] for k in d.files}
    from bench.world import build_corpus

    df = build_corpus(args.corpus_n, seed=args.corpus_seed)
    ev = df[df["split"] == "evaluator"].reset_index(drop=True)
    ho = df[df["split"] == "heldout"].reset_index(drop=True)
    rng = np.random.default_rng(args.seed)
    singles = ho[ho["spec"].map(lambda s: len(json.loads(s)["objects"]) == 1)]
    singles = singles.iloc[rng.choice(len(singles), size=min(600, len(singles)), replace=False)]
    general = ho[ho["category"] != "role"]
    retr = general.iloc[rng.choice(len(general), size=100, replace=False)]
    single_obj = [json.loads(s)["objects"][0] for s in singles["spec"]]
    d = {
        "train_images": render_rows(ev), "train_captions": np.array(ev["caption"], dtype=object),
        "single_images": render_rows(singles),
        "single_colour": np.array([o["colour"] for o in single_obj], dtype=object),
        "single_shape": np.array([o["shape"] for o in single_obj], dtype=object),
        "retr_images": render_rows(retr), "retr_captions": np.array(retr["caption"], dtype=object),
    }
    np.savez(cache, **d)
    return d


def evaluate(model, tokenizer, data, mean, std) -> dict:
    import torch

    model.eval()
    with torch.no_grad():
        img = model.encode_image(normalise(data["single_images"], mean, std), normalize=True)

        def classify(words, make):
            protos = []
            for w in words:
                t = model.encode_text(tokenizer(make(w)), normalize=True).mean(0)
                protos.append(t / t.norm())
            return np.array(words)[(img @ torch.stack(protos).T).argmax(1).numpy()]

        colour = classify(COLOURS, lambda c: [f"a {c} {s}" for s in SHAPES])
        shape = classify(SHAPES, lambda s: [f"a {c} {s}" for c in COLOURS])
        ri = model.encode_image(normalise(data["retr_images"], mean, std), normalize=True)
        rt = model.encode_text(tokenizer(list(data["retr_captions"])), normalize=True)
        top1 = (rt @ ri.T).argmax(1).numpy()
    model.train()
    return {"zero_shot_colour_acc": float((colour == data["single_colour"]).mean()),
            "zero_shot_shape_acc": float((shape == data["single_shape"]).mean()),
            "caption_to_image_recall_at_1_of_100": float((top1 == np.arange(len(top1))).mean()),
            "n_single": int(len(colour)), "n_retrieval": int(len(top1))}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default=str(ROOT / "build" / "training" / "clip"))
    ap.add_argument("--export", default=str(ROOT / "bench" / "models" / "builtin" / "shapes-clip"))
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--corpus-n", type=int, default=100_000)
    ap.add_argument("--corpus-seed", type=int, default=0)
    ap.add_argument("--steps", type=int, default=280)
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--eval-every", type=int, default=140)
    ap.add_argument("--ckpt-minutes", type=float, default=3.0)
    args = ap.parse_args(argv)

    import open_clip
    import torch
    import torch.nn.functional as F

    torch.set_num_threads(args.threads)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    export = Path(args.export)
    export.mkdir(parents=True, exist_ok=True)
    cfg_path = export / f"{MODEL_NAME}.json"
    cfg_path.write_text(json.dumps(MODEL_CFG, indent=2) + "\n")
    if MODEL_NAME not in open_clip.list_models():
        open_clip.add_model_config(cfg_path)
    t0 = time.time()
    data = load_data(out, args)
    log(out, f"data: {len(data['train_images'])} evaluator-split images ({time.time() - t0:.0f}s)")

    torch.manual_seed(args.seed)
    model, _, preprocess = open_clip.create_model_and_transforms(MODEL_NAME, pretrained=None)
    tokenizer = open_clip.get_tokenizer(MODEL_NAME)
    mean, std = model.visual.image_mean, model.visual.image_std
    n_params = sum(p.numel() for p in model.parameters())
    log(out, f"model: {n_params / 1e6:.2f}M params")
    train_ids = tokenizer(list(data["train_captions"]))
    decay = [p for n, p in model.named_parameters() if p.ndim >= 2 and "embedding" not in n]
    no_decay = [p for n, p in model.named_parameters() if not (p.ndim >= 2 and "embedding" not in n)]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": 0.1}, {"params": no_decay, "weight_decay": 0.0}],
                            lr=args.lr, betas=(0.9, 0.98), eps=1e-6)
    ck = out / "ckpt.pt"
    step = 0
    if ck.exists():
        st = torch.load(ck, weights_only=False)
        model.load_state_dict(st["model"])
        opt.load_state_dict(st["opt"])
        step = st["step"]
        log(out, f"resumed at step {step}")
    n = len(train_ids)
    t_ck = time.time()
    t_train = time.time()
    model.train()
    while step < args.steps:
        lr = args.lr * min(1.0, (step + 1) / 50) * 0.5 * (1 + np.cos(np.pi * step / args.steps))
        for g in opt.param_groups:
            g["lr"] = lr
        gen = torch.Generator().manual_seed(args.seed * 1_000_003 + step)
        idx = torch.randperm(n, generator=gen)[:args.batch]
        x = normalise(data["train_images"][np.sort(idx.numpy())], mean, std)
        ids = train_ids[torch.from_numpy(np.sort(idx.numpy()))]
        img_f, txt_f, scale = model(x, ids)
        logits = scale * img_f @ txt_f.T
        # Identical captions in one batch are positives of each other.
        caps = data["train_captions"][np.sort(idx.numpy())]
        same = torch.from_numpy((caps[:, None] == caps[None, :]).astype(np.float32))
        target = same / same.sum(1, keepdim=True)
        loss = 0.5 * (F.cross_entropy(logits, target) + F.cross_entropy(logits.T, target))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        with torch.no_grad():
            model.logit_scale.clamp_(0, np.log(100))
        step += 1
        row = [step, f"{loss.item():.4f}", f"{scale.item():.2f}", f"{lr:.2e}", round(time.time() - t_train, 1)]
        if step % args.eval_every == 0 or step == args.steps:
            m = evaluate(model, tokenizer, data, mean, std)
            row += [m["zero_shot_colour_acc"], m["zero_shot_shape_acc"], m["caption_to_image_recall_at_1_of_100"]]
            log(out, f"step {step}: loss {loss.item():.3f} {m}")
        else:
            row += ["", "", ""]
        new = not (out / "loss.csv").exists()
        with open(out / "loss.csv", "a", newline="") as f:
            w = csv.writer(f)
            if new:
                w.writerow(["step", "loss", "logit_scale", "lr", "elapsed_s", "colour_acc", "shape_acc", "recall_at_1"])
            w.writerow(row)
        if time.time() - t_ck > args.ckpt_minutes * 60 or step == args.steps:
            tmp = ck.with_name("ckpt.tmp")
            torch.save({"model": model.state_dict(), "opt": opt.state_dict(), "step": step}, tmp)
            os.replace(tmp, ck)
            t_ck = time.time()

    wall = time.time() - t0
    metrics = evaluate(model, tokenizer, data, mean, std)
    times_p = out / "times.json"
    times = json.loads(times_p.read_text()) if times_p.exists() else {}
    times["train_session_s"] = round(times.get("train_session_s", 0.0) + wall, 1)
    times_p.write_text(json.dumps(times, indent=2))

    from safetensors.torch import save_file

    state = {k: v.detach().half().contiguous() for k, v in model.state_dict().items()}
    save_file(state, str(export / "open_clip_model.safetensors"))
    # Check that fp16 storage does not change the measurements much.
    model.load_state_dict({k: v.float() for k, v in state.items()})
    metrics_fp16 = evaluate(model, tokenizer, data, mean, std)
    pp = {"size": [IMAGE_SIZE, IMAGE_SIZE], "mean": list(mean), "std": list(std),
          "interpolation": "bicubic", "resize_mode": "shortest"}
    (export / "open_clip_config.json").write_text(json.dumps({"model_cfg": MODEL_CFG, "preprocess_cfg": pp},
                                                             indent=2) + "\n")
    info = {"model": MODEL_NAME, "params": n_params, "steps": step, "batch": args.batch, "seed": args.seed,
            "train_split": "evaluator", "train_rows": int(n), "metrics": metrics_fp16,
            "metrics_fp32": metrics, "stage_seconds": times}
    (export / "metrics.json").write_text(json.dumps(info, indent=2) + "\n")
    (export / "README.md").write_text(f"""# shapes-clip: the built-in evaluator CLIP

A small open_clip model (ViT image tower, patch 8 on 64x64 images, 4 layers of
width 128; text transformer with 3 layers of width 64 and the standard 49,408
token CLIP vocabulary and open_clip tokenizer; joint embedding {MODEL_CFG['embed_dim']}),
{n_params / 1e6:.2f}M parameters, stored in fp16.

Trained contrastively by `scripts/train_evaluator_clip.py` (seed {args.seed},
{step} steps at batch {args.batch}) on the `evaluator` split of shapes-laion
(n={args.corpus_n}, seed {args.corpus_seed}; {n} rows), which is disjoint from the
generator's `train` split. It is never the generator's own text encoder.

Load it with `bench.models.evaluator_clip.load_evaluator_clip()`, or with
open_clip directly: `open_clip.add_model_config("{MODEL_NAME}.json")` then
`open_clip.create_model_and_transforms("{MODEL_NAME}", pretrained="open_clip_model.safetensors")`,
or `open_clip.create_model_and_transforms("local-dir:<this folder>")`.

Measured on renders of the `heldout` split (fp16 weights):

| metric | value |
|---|---|
| zero-shot colour accuracy (6 colours, {metrics_fp16['n_single']} single-object images) | {metrics_fp16['zero_shot_colour_acc']:.3f} |
| zero-shot shape accuracy (4 shapes) | {metrics_fp16['zero_shot_shape_acc']:.3f} |
| caption->image recall@1 among {metrics_fp16['n_retrieval']} | {metrics_fp16['caption_to_image_recall_at_1_of_100']:.3f} |

Chance: 0.167, 0.25 and 0.01.
""")
    log(out, f"export: {export} metrics {metrics_fp16} (fp32 {metrics}); session wall {wall:.0f}s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
