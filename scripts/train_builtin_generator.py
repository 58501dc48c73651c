#!/usr/bin/env python
"""Train the built-in shapes generator: a standard diffusers StableDiffusionPipeline.

    python scripts/train_builtin_generator.py            # all stages, resumable

Stages (each one is skipped when its output exists, and resumes from its last
checkpoint when it was interrupted):

1. ``data``    build shapes-laion (n=100_000, seed 0) and take its whole *train*
               split (80,444 rows; natural frequencies, so iconic duplicates,
               watermark rows and role rows keep their shares), render it once
               to a uint8 array, tokenize the captions.
2. ``vae``     train an f4 AutoencoderKL (64x64x3 <-> 16x16x4) on the images
               (L1 + L2 + a tiny KL term; aligned 32x32 crops first, full
               images at the end); the exact detector then reads the
               reconstructions of held-back rows against their specs
               (colour, shape, size, position hit rates in the log).
3. ``latents`` encode every training image once; measure the per-channel mean
               and std of the latents and fold the normalisation into the
               VAE's 1x1 ``quant_conv`` / ``post_quant_conv`` so that latents
               are ~N(0, 1) per channel while the VAE stays a standard
               AutoencoderKL with ``scaling_factor = 1``.
4. ``text``    pre-train the small CLIPTextModel contrastively (InfoNCE against a
               small conv net on the latents, on the generator's own split),
               as Stable Diffusion starts from a pre-trained CLIP text tower.
5. ``unet``    train UNet2DConditionModel (attention at 8x8 and 4x4) and fine-tune
               the text encoder at 0.1x its rate (v-prediction, zero-terminal-SNR
               scaled-linear schedule, 10% caption dropout for classifier-free
               guidance, EMA weights, position/binding/counting rows sampled
               twice as often), with periodic accuracy probes judged by the
               exact detector.
6. ``export``  write the EMA weights as a ``save_pretrained`` pipeline
               directory (fp16 safetensors) with a DDIM scheduler.

The recipe and the ablations behind it: docs/generator-recipe-ablations.md.
Everything is seeded; batches are a function of (seed, step), so a resumed run
sees the same batches as an uninterrupted one.  Logs (CSV loss curves, probe
accuracies, stage wall times) and checkpoints go to ``build/training/generator``.
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

IMAGE_SIZE = 64
EMPTY = ""

COLOUR_PROBE = [(c, s) for c in ("red", "orange", "yellow", "green", "blue", "purple")
                for s in ("circle", "square")]


# --------------------------------------------------------------------------- configs

def vae_config(args) -> dict:
    # f8: four blocks, 64 px -> 8x8 latents; f4: three blocks -> 16x16 latents.
    blocks = (16, 32, 64, 64) if args.vae_factor == 8 else (16, 32, 64)
    return dict(in_channels=3, out_channels=3, latent_channels=args.latent_channels,
                down_block_types=("DownEncoderBlock2D",) * len(blocks),
                up_block_types=("UpDecoderBlock2D",) * len(blocks),
                block_out_channels=blocks, layers_per_block=1, norm_num_groups=8,
                sample_size=IMAGE_SIZE, scaling_factor=1.0)


def text_config(hidden: int) -> dict:
    return dict(vocab_size=49408, hidden_size=hidden, intermediate_size=hidden * 4,
                num_hidden_layers=3, num_attention_heads=4, max_position_embeddings=77,
                bos_token_id=49406, eos_token_id=49407, pad_token_id=49407, projection_dim=hidden)


def unet_config(args) -> dict:
    channels = tuple(int(c) for c in args.unet_channels.split(","))
    levels = getattr(args, "attn_levels", "")  # absent in the args.json of runs before the option
    if args.cross_attn_all:  # cross-attention at every resolution (and the mid block)
        attn = [True] * len(channels)
    elif levels:  # 1 = a transformer block (self- and cross-attention) at that level
        attn = [c.strip() == "1" for c in levels.split(",")]
        if len(attn) != len(channels):
            raise SystemExit(f"error: --attn-levels has {len(attn)} levels but --unet-channels has "
                             f"{len(channels)}; give one 0/1 per level")
    else:  # the first version: none at the lowest resolution
        attn = [True] * (len(channels) - 1) + [False]
    down = tuple("CrossAttnDownBlock2D" if a else "DownBlock2D" for a in attn)
    up = tuple("CrossAttnUpBlock2D" if a else "UpBlock2D" for a in reversed(attn))
    return dict(sample_size=IMAGE_SIZE // args.vae_factor, in_channels=args.latent_channels,
                out_channels=args.latent_channels, layers_per_block=1, block_out_channels=channels,
                down_block_types=down, up_block_types=up,
                cross_attention_dim=args.text_hidden, attention_head_dim=32, norm_num_groups=16)


def scheduler_kwargs() -> dict:
    return dict(num_train_timesteps=1000, beta_start=0.00085, beta_end=0.012,
                beta_schedule="scaled_linear", prediction_type="v_prediction",
                rescale_betas_zero_snr=True, clip_sample=False)


# --------------------------------------------------------------------------- helpers

class Log:
    """Append-only text log + per-stage wall times in ``times.json``."""

    def __init__(self, out: Path):
        self.out = out
        self.path = out / "train.log"

    def __call__(self, msg: str) -> None:
        line = f"{time.strftime('%H:%M:%S')} {msg}"
        print(line, flush=True)
        with open(self.path, "a") as f:
            f.write(line + "\n")

    def add_time(self, stage: str, seconds: float) -> None:
        p = self.out / "times.json"
        times = json.loads(p.read_text()) if p.exists() else {}
        times[stage] = round(times.get(stage, 0.0) + seconds, 1)
        p.write_text(json.dumps(times, indent=2))


def atomic_torch_save(obj, path: Path) -> None:
    import torch

    tmp = path.with_name(path.name + ".tmp")
    torch.save(obj, tmp)
    os.replace(tmp, path)


def csv_append(path: Path, header: list[str], row: list) -> None:
    new = not path.exists()
    with open(path, "a", newline="") as f:
        w = csv.writer(f)
        if new:
            w.writerow(header)
        w.writerow(row)


def batch_indices(seed: int, step: int, n: int, bs: int, weights=None):
    """A batch of row indices, a function of (seed, step) only, so a resumed run sees
    the batches of an uninterrupted one; ``weights`` (per row) oversample some rows."""
    import torch

    g = torch.Generator().manual_seed(seed * 1_000_003 + step)
    if weights is None:
        return torch.randint(0, n, (bs,), generator=g), g
    return torch.multinomial(weights, bs, replacement=True, generator=g), g


def training_device(args):
    """CUDA when one is present (``--device auto``), else the CPU.  Batches, noise and
    timesteps are drawn on the CPU from (seed, step) generators and then moved, so the
    batches are the same on either device (the arithmetic is not bit-identical)."""
    import torch

    if args.device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if args.device == "cuda" and not torch.cuda.is_available():
        raise SystemExit("error: --device cuda but torch sees no CUDA device; use --device auto or cpu")
    return torch.device(args.device)


def row_weights(out: Path, oversample: str):
    """Per-row sampling weights from ``category:weight,...`` (other categories 1)."""
    import pandas as pd
    import torch

    if not oversample:
        return None
    try:
        factor = {k: float(v) for k, v in (item.split(":") for item in oversample.split(","))}
    except ValueError:
        raise SystemExit(f"error: --oversample {oversample!r} must be category:weight,... "
                         "(e.g. position:2,binding:2)") from None
    cats = pd.read_parquet(out / "data" / "rows.parquet", columns=["category"])["category"]
    unknown = set(factor) - set(cats.unique())
    if unknown:
        raise SystemExit(f"error: --oversample names unknown categories {sorted(unknown)}; "
                         f"known: {sorted(cats.unique())}")
    return torch.tensor(cats.map(lambda c: factor.get(c, 1.0)).to_numpy(), dtype=torch.float64)


def build_tokenizer(out: Path):
    from bench.models.clip_tokenizer import build_clip_tokenizer

    return build_clip_tokenizer(out / "tokenizer")


def build_vae(args):
    from diffusers import AutoencoderKL

    return AutoencoderKL(**vae_config(args))


# --------------------------------------------------------------------------- stage 1: data

def stage_data(args, out: Path, log: Log) -> None:
    if (out / "data" / "images.npy").exists():
        return
    t0 = time.time()
    from bench.world import build_corpus, render_row

    d = out / "data"
    d.mkdir(parents=True, exist_ok=True)
    df = build_corpus(args.corpus_n, seed=args.corpus_seed)
    train = df[df["split"] == "train"].reset_index(drop=True)
    rng = np.random.default_rng(args.seed)
    take = np.sort(rng.choice(len(train), size=min(args.n_train, len(train)), replace=False))
    sub = train.iloc[take].reset_index(drop=True)
    log(f"data: corpus {len(df)} rows, train split {len(train)}, subset {len(sub)}; "
        f"categories {sub['category'].value_counts().to_dict()}; watermark {int(sub['has_watermark'].sum())}")
    images = np.zeros((len(sub), IMAGE_SIZE, IMAGE_SIZE, 3), dtype=np.uint8)
    cache: dict[str, np.ndarray] = {}
    for i, row in enumerate(sub.itertuples(index=False)):
        if row.spec not in cache:
            arr = np.asarray(render_row({"spec": row.spec, "width": IMAGE_SIZE}))
            if row.dup_group >= 0:
                cache[row.spec] = arr
        else:
            arr = cache[row.spec]
        images[i] = arr
    tok = build_tokenizer(out)
    ids = tok(list(sub["caption"]), padding="max_length", max_length=77, truncation=True,
              return_tensors="np")["input_ids"].astype(np.int32)
    sub[["key", "caption", "spec", "category", "dup_group", "has_watermark", "role", "attribute"]].to_parquet(
        d / "rows.parquet", index=False)
    np.save(d / "input_ids.npy", ids)
    np.save(d / "images.tmp.npy", images)
    os.replace(d / "images.tmp.npy", d / "images.npy")
    log(f"data: rendered {len(sub)} images in {time.time() - t0:.0f}s")
    log.add_time("data", time.time() - t0)


# --------------------------------------------------------------------------- stage 2: vae

def to_tensor(images_u8):
    import torch

    return torch.from_numpy(images_u8).permute(0, 3, 1, 2).float().div(127.5).sub(1.0)


def stage_vae(args, out: Path, log: Log) -> None:
    import torch

    final = out / "vae_raw.pt"
    if final.exists():
        return
    if args.vae_from:
        # Reuse a trained VAE (a pipeline directory): recipe ablations of the UNet then
        # skip the VAE's 13 minutes; the latents stage re-folds its normalisation.
        from diffusers import AutoencoderKL

        vae = AutoencoderKL.from_pretrained(args.vae_from, subfolder="vae").float()
        atomic_torch_save(vae.state_dict(), final)
        log(f"vae: taken from {args.vae_from}; detector on reconstructions: {vae_detector_check(vae.eval(), out)}")
        return
    images = np.load(out / "data" / "images.npy", mmap_mode="r")
    n = len(images)
    torch.manual_seed(args.seed)
    dev = training_device(args)
    vae = build_vae(args).to(dev)
    opt = torch.optim.AdamW(vae.parameters(), lr=args.vae_lr, weight_decay=0.0)
    ck = out / "vae_ckpt.pt"
    step = 0
    if ck.exists():
        state = torch.load(ck, weights_only=False, map_location="cpu")
        vae.load_state_dict(state["model"])
        opt.load_state_dict(state["opt"])
        step = state["step"]
        log(f"vae: resumed at step {step}")
    total = args.vae_steps
    full_from = int(total * 0.75)
    t_stage = time.time()
    t_ck = time.time()
    vae.train()
    while step < total:
        lr = args.vae_lr * min(1.0, (step + 1) / 50) * (0.5 * (1 + np.cos(np.pi * step / total)) * 0.9 + 0.1)
        for gr in opt.param_groups:
            gr["lr"] = lr
        idx, g = batch_indices(args.seed + 1, step, n, args.vae_batch if step >= full_from else args.vae_batch * 2)
        x = to_tensor(images[np.sort(idx.numpy())])
        if step < full_from:  # 32x32 crops aligned to the 8-pixel latent grid
            oy, ox = (torch.randint(0, 5, (2,), generator=g) * 8).tolist()
            x = x[:, :, oy:oy + 32, ox:ox + 32]
        x = x.to(dev)
        post = vae.encode(x).latent_dist
        z = post.sample()
        y = vae.decode(z).sample
        rec = (y - x).abs().mean() + ((y - x) ** 2).mean()
        kl = post.kl().mean() / z[0].numel()
        loss = rec + args.vae_kl * kl
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(vae.parameters(), 1.0)
        opt.step()
        step += 1
        if step % 10 == 0 or step == total:
            csv_append(out / "vae_loss.csv", ["step", "elapsed_s", "loss", "rec", "kl", "lr"],
                       [step, round(time.time() - t_stage, 1), f"{loss.item():.5f}", f"{rec.item():.5f}",
                        f"{kl.item():.4f}", f"{lr:.2e}"])
        if step % 50 == 0:
            log(f"vae: step {step}/{total} rec {rec.item():.4f} kl {kl.item():.3f}")
        if time.time() - t_ck > args.ckpt_minutes * 60 or step == total:
            atomic_torch_save({"model": vae.state_dict(), "opt": opt.state_dict(), "step": step}, ck)
            log.add_time("vae", time.time() - t_ck)
            t_ck = time.time()
    log.add_time("vae", time.time() - t_ck)
    vae = vae.cpu().eval()
    with torch.no_grad():
        x = to_tensor(images[:32])
        y = vae.decode(vae.encode(x).latent_dist.mode()).sample.clamp(-1, 1)
        err = (y - x).abs().mean().item()
    save_grid(torch.cat([x[:16], y[:16]]), out / "vae_recon.png", nrow=16)
    log(f"vae: done, full-image L1 {err:.4f} (on [-1, 1]); grid at vae_recon.png")
    log(f"vae: detector on reconstructions: {vae_detector_check(vae, out)}")
    atomic_torch_save(vae.state_dict(), final)


def vae_detector_check(vae, out: Path, n: int = 256) -> dict:
    """Field hit rates of the exact detector on VAE reconstructions of the last
    ``n`` training rows, against their true specs (colour must survive the VAE)."""
    import pandas as pd
    import torch

    from bench.world import SceneSpec, compare_scenes, detect

    images = np.load(out / "data" / "images.npy", mmap_mode="r")[-n:]
    specs = pd.read_parquet(out / "data" / "rows.parquet", columns=["spec"])["spec"].iloc[-n:]
    with torch.no_grad():
        y = vae.decode(vae.encode(to_tensor(np.ascontiguousarray(images))).latent_dist.mode()).sample
    arr = ((y.clamp(-1, 1) + 1) * 127.5).round().byte().permute(0, 2, 3, 1).numpy()
    hits: dict[str, list[int]] = {}
    for spec, im in zip(specs, arr):
        for field, (h, t) in compare_scenes(SceneSpec.from_json(spec), detect(im)).items():
            acc = hits.setdefault(field, [0, 0])
            acc[0] += h
            acc[1] += t
    return {f: round(h / t, 3) for f, (h, t) in hits.items() if t}


def save_grid(x, path: Path, nrow: int = 8) -> None:
    from PIL import Image

    arr = ((x.clamp(-1, 1) + 1) * 127.5).round().byte().permute(0, 2, 3, 1).numpy()
    n, h, w, _ = arr.shape
    rows = (n + nrow - 1) // nrow
    grid = np.full((rows * h, nrow * w, 3), 255, dtype=np.uint8)
    for i in range(n):
        grid[(i // nrow) * h:(i // nrow + 1) * h, (i % nrow) * w:(i % nrow + 1) * w] = arr[i]
    Image.fromarray(grid).resize((nrow * w * 2, rows * h * 2), Image.NEAREST).save(path)


# --------------------------------------------------------------------------- stage 3: latents

def fold_normalisation(vae, mu, sigma) -> None:
    """Make the VAE emit per-channel normalised latents and accept them back.

    quant_conv maps encoder features to [mean, logvar] (1x1 conv): mean' =
    (mean - mu) / sigma and logvar' = logvar - 2 log sigma.  post_quant_conv
    takes z' and must act as if given z = z' * sigma + mu."""
    import torch

    c = vae.config.latent_channels
    mu = torch.as_tensor(mu, dtype=torch.float32)
    sigma = torch.as_tensor(sigma, dtype=torch.float32)
    with torch.no_grad():
        q = vae.quant_conv
        q.weight[:c] /= sigma.view(c, 1, 1, 1)
        q.bias[:c] = (q.bias[:c] - mu) / sigma
        q.bias[c:] -= 2 * torch.log(sigma)
        p = vae.post_quant_conv
        w = p.weight[:, :, 0, 0].clone()  # (out, in)
        p.bias += w @ mu
        p.weight *= sigma.view(1, c, 1, 1)


def stage_latents(args, out: Path, log: Log) -> None:
    import torch

    if (out / "latents.pt").exists():
        return
    t0 = time.time()
    images = np.load(out / "data" / "images.npy", mmap_mode="r")
    vae = build_vae(args)
    vae.load_state_dict(torch.load(out / "vae_raw.pt", map_location="cpu"))
    dev = training_device(args)
    vae.to(dev).eval()
    means, stds = [], []
    with torch.no_grad():
        for s in range(0, len(images), 256):
            post = vae.encode(to_tensor(images[s:s + 256]).to(dev)).latent_dist
            means.append(post.mean.cpu())
            stds.append(post.std.cpu())
    vae.cpu()
    mean = torch.cat(means)
    std = torch.cat(stds)
    mu = mean.mean(dim=(0, 2, 3))
    sigma = (mean.var(dim=(0, 2, 3)) + (std ** 2).mean(dim=(0, 2, 3))).sqrt()
    log(f"latents: per-channel mu {mu.numpy().round(3).tolist()} sigma {sigma.numpy().round(3).tolist()} "
        f"(posterior std mean {std.mean(dim=(0, 2, 3)).numpy().round(4).tolist()})")
    fold_normalisation(vae, mu, sigma)
    mean = (mean - mu.view(1, -1, 1, 1)) / sigma.view(1, -1, 1, 1)
    std = std / sigma.view(1, -1, 1, 1)
    with torch.no_grad():  # check the fold: the folded VAE gives the normalised latents
        post = vae.encode(to_tensor(images[:8])).latent_dist
        assert torch.allclose(post.mean, mean[:8], atol=1e-3), (post.mean - mean[:8]).abs().max()
        y = vae.decode(mean[:16]).sample
        save_grid(torch.cat([to_tensor(images[:16]), y]), out / "latents_check.png", nrow=16)
    atomic_torch_save(vae.state_dict(), out / "vae_norm.pt")
    atomic_torch_save({"mean": mean.half(), "std": std.half(), "mu": mu, "sigma": sigma}, out / "latents.pt")
    log(f"latents: encoded {len(images)} images in {time.time() - t0:.0f}s; normalised std "
        f"{mean.std(dim=(0, 2, 3)).numpy().round(3).tolist()}")
    log.add_time("latents", time.time() - t0)


# --------------------------------------------------------------------------- stage 3b: text

def stage_text(args, out: Path, log: Log) -> None:
    """Contrastive pre-training of the text encoder against the training latents (CLIP's
    symmetric InfoNCE, Radford et al. 2021), on the generator's own split, before the UNet.

    Stable Diffusion conditions on a frozen, contrastively pre-trained text tower; trained
    jointly from scratch with the diffusion loss, ours learns colour words but not binding
    or position.  The image tower is a small convolutional net on the VAE latents (the
    images' own code, so no second encoder of pixels); it is thrown away afterwards."""
    import torch
    from transformers import CLIPTextConfig, CLIPTextModel

    final = out / "text_pretrained.pt"
    if final.exists():
        return
    t0 = time.time()
    lat = torch.load(out / "latents.pt", map_location="cpu")
    mean = lat["mean"].float()
    ids_all = torch.from_numpy(np.load(out / "data" / "input_ids.npy")).long()
    n, c, h, _ = mean.shape
    torch.manual_seed(args.seed)
    text = CLIPTextModel(CLIPTextConfig(**text_config(args.text_hidden)))
    dim = args.text_hidden
    layers = [torch.nn.Conv2d(c, 64, 3, padding=1), torch.nn.GELU()]
    side = h
    while side > 4:  # stride down to 4x4, keeping where things are
        layers += [torch.nn.Conv2d(64, 64, 3, stride=2, padding=1), torch.nn.GELU()]
        side //= 2
    image_tower = torch.nn.Sequential(*layers, torch.nn.Flatten(), torch.nn.Linear(64 * side * side, dim))
    text_proj = torch.nn.Linear(dim, dim, bias=False)
    dev = training_device(args)
    text, image_tower, text_proj = text.to(dev), image_tower.to(dev), text_proj.to(dev)
    logit_scale = torch.nn.Parameter(torch.tensor(np.log(1 / 0.07), dtype=torch.float32, device=dev))
    params = list(text.parameters()) + list(image_tower.parameters()) + list(text_proj.parameters()) + [logit_scale]
    opt = torch.optim.AdamW(params, lr=args.text_lr, weight_decay=0.01)
    text.train()
    for step in range(args.text_steps):
        lr = args.text_lr * min(1.0, (step + 1) / 50) * 0.5 * (1 + np.cos(np.pi * step / args.text_steps))
        for gr in opt.param_groups:
            gr["lr"] = lr
        idx, _ = batch_indices(args.seed + 3, step, n, args.text_batch)
        ids = ids_all[idx].to(dev)
        img = torch.nn.functional.normalize(image_tower(mean[idx].to(dev)), dim=-1)
        txt = torch.nn.functional.normalize(text_proj(text(ids).pooler_output), dim=-1)
        logits = logit_scale.clamp(max=np.log(100)).exp() * img @ txt.T
        # Rows with the same caption are not negatives of each other (iconic duplicates).
        same = (ids[:, None, :] == ids[None, :, :]).all(-1)
        target = same.float() / same.float().sum(1, keepdim=True)
        loss = 0.5 * (torch.nn.functional.cross_entropy(logits, target)
                      + torch.nn.functional.cross_entropy(logits.T, target))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if (step + 1) % 50 == 0:
            acc = (logits.argmax(1).cpu() == torch.arange(len(idx))).float().mean().item()
            log(f"text: step {step + 1}/{args.text_steps} loss {loss.item():.3f} in-batch top-1 {acc:.2f}")
    atomic_torch_save(text.cpu().state_dict(), final)
    log(f"text: pre-trained in {time.time() - t0:.0f}s")
    log.add_time("text", time.time() - t0)


# --------------------------------------------------------------------------- stage 4: unet

def make_scheduler(kind: str = "ddim"):
    from diffusers import DDIMScheduler, DDPMScheduler

    if kind == "ddpm":
        return DDPMScheduler(**scheduler_kwargs())
    return DDIMScheduler(**scheduler_kwargs(), set_alpha_to_one=False, steps_offset=1,
                         timestep_spacing="trailing")


def make_pipeline(vae, unet, text_encoder, tokenizer):
    from diffusers import StableDiffusionPipeline

    return StableDiffusionPipeline(vae=vae, unet=unet, text_encoder=text_encoder, tokenizer=tokenizer,
                                   scheduler=make_scheduler(), safety_checker=None,
                                   feature_extractor=None, requires_safety_checker=False)


def colour_probe(pipe, guidance: float = 5.0, steps: int = 20, seed: int = 0) -> dict:
    """Generate one image per (colour, shape) probe prompt; judge with the detector."""
    import torch

    from bench.world import check

    prompts = [f"a {c} {s}" for c, s in COLOUR_PROBE]
    gen = [torch.Generator().manual_seed(seed + i) for i in range(len(prompts))]
    imgs = pipe(prompts, num_inference_steps=steps, guidance_scale=guidance, generator=gen).images
    colour = shape_colour = count1 = 0
    for (c, s), img in zip(COLOUR_PROBE, imgs):
        r = check({"objects": [{"shape": s, "colour": c, "count": 1}]}, img)
        shape_colour += bool(r["colour"])
        colour += any(o["colour"] == c for o in r["detected"])
        count1 += r["n_detected"] == 1
    n = len(prompts)
    return {"colour": colour / n, "shape_colour": shape_colour / n, "one_object": count1 / n, "images": imgs}


def stage_unet(args, out: Path, log: Log) -> None:
    import copy

    import torch
    from diffusers import UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    final = out / "unet_final.pt"
    # Done, unless asked for more steps than it has: then it continues from the last checkpoint.
    if final.exists() and torch.load(final, weights_only=False, map_location="cpu")["step"] >= args.unet_steps:
        return
    lat = torch.load(out / "latents.pt", map_location="cpu")
    mean, std = lat["mean"], lat["std"]
    ids_all = torch.from_numpy(np.load(out / "data" / "input_ids.npy")).long()
    tok = build_tokenizer(out)
    empty_ids = tok([EMPTY], padding="max_length", max_length=77, return_tensors="pt")["input_ids"][0]
    n = len(mean)

    torch.manual_seed(args.seed)
    text = CLIPTextModel(CLIPTextConfig(**text_config(args.text_hidden)))
    unet = UNet2DConditionModel(**unet_config(args))
    log(f"unet: {sum(p.numel() for p in unet.parameters()) / 1e6:.2f}M params; text encoder "
        f"{sum(p.numel() for p in text.parameters()) / 1e6:.2f}M; {n} training latents")
    if args.text_init == "pretrained":
        text.load_state_dict(torch.load(out / "text_pretrained.pt", map_location="cpu"))
    dev = training_device(args)
    unet, text = unet.to(dev), text.to(dev)
    ema_unet, ema_text = copy.deepcopy(unet).eval(), copy.deepcopy(text).eval()
    for p in list(ema_unet.parameters()) + list(ema_text.parameters()):
        p.requires_grad_(False)
    params = list(unet.parameters()) + list(text.parameters())
    # The text encoder's learning rate is a fraction of the UNet's (0 = frozen).
    opt = torch.optim.AdamW([{"params": list(unet.parameters()), "scale": 1.0},
                             {"params": list(text.parameters()), "scale": args.text_lr_scale}],
                            lr=args.unet_lr, weight_decay=0.01)
    sched = make_scheduler("ddpm")
    acp = sched.alphas_cumprod
    ck = out / "unet_ckpt.pt"
    step = 0
    if ck.exists():
        state = torch.load(ck, weights_only=False, map_location="cpu")
        unet.load_state_dict(state["unet"])
        text.load_state_dict(state["text"])
        ema_unet.load_state_dict(state["ema_unet"])
        ema_text.load_state_dict(state["ema_text"])
        opt.load_state_dict(state["opt"])  # its state follows the parameters' device
        step = state["step"]
        log(f"unet: resumed at step {step}")
    vae = build_vae(args)
    vae.load_state_dict(torch.load(out / "vae_norm.pt", map_location="cpu"))
    vae.to(dev).eval()
    acp = acp.to(dev)

    weights = row_weights(out, args.oversample)
    total = args.unet_steps
    t_ck = t_last = time.time()
    unet.train()
    text.train()
    while step < total:
        warm = min(1.0, (step + 1) / args.warmup)
        lr = args.unet_lr * warm * (0.1 + 0.9 * 0.5 * (1 + np.cos(np.pi * step / total)))
        for gr in opt.param_groups:
            gr["lr"] = lr * gr["scale"]
        idx, g = batch_indices(args.seed + 2, step, n, args.batch, weights)
        z0 = mean[idx].float() + std[idx].float() * torch.randn(mean[idx].shape, generator=g)
        ids = ids_all[idx].clone()
        drop = torch.rand(len(idx), generator=g) < args.cond_dropout
        ids[drop] = empty_ids
        t = torch.randint(0, sched.config.num_train_timesteps, (len(idx),), generator=g)
        noise = torch.randn(z0.shape, generator=g)
        z0, ids, t, noise = z0.to(dev), ids.to(dev), t.to(dev), noise.to(dev)
        a = acp[t].view(-1, 1, 1, 1)
        zt = a.sqrt() * z0 + (1 - a).sqrt() * noise
        target = a.sqrt() * noise - (1 - a).sqrt() * z0  # v
        cond = text(ids)[0]
        pred = unet(zt, t, encoder_hidden_states=cond).sample
        if args.snr_gamma > 0:
            # Min-SNR-gamma (Hang et al. 2023) for v-prediction: weight min(SNR, gamma) / (SNR + 1),
            # as in diffusers' train_text_to_image.py.
            snr = acp[t] / (1 - acp[t])
            w = torch.clamp(snr, max=args.snr_gamma) / (snr + 1)
            loss = (w * ((pred - target) ** 2).mean(dim=(1, 2, 3))).mean()
        else:
            loss = torch.nn.functional.mse_loss(pred, target)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        step += 1
        decay = min(args.ema, (1 + step) / (10 + step))
        with torch.no_grad():
            for src, dst in ((unet, ema_unet), (text, ema_text)):
                for ps, pd in zip(src.parameters(), dst.parameters()):
                    pd.mul_(decay).add_(ps.detach(), alpha=1 - decay)
        if step % 25 == 0 or step == total:
            now = time.time()
            csv_append(out / "unet_loss.csv", ["step", "loss", "lr", "sec_per_step", "time"],
                       [step, f"{loss.item():.5f}", f"{lr:.2e}", f"{(now - t_last) / 25:.3f}",
                        time.strftime("%H:%M:%S")])
            t_last = now
        if step % 100 == 0:
            log(f"unet: step {step}/{total} loss {loss.item():.4f} lr {lr:.2e}")
        if step % args.probe_every == 0 or step == total:
            tp = time.time()
            pipe = make_pipeline(vae, ema_unet, ema_text, tok)
            pipe.set_progress_bar_config(disable=True)
            r = colour_probe(pipe, guidance=args.probe_guidance)
            imgs = r.pop("images")
            save_grid(torch.stack([to_tensor(np.asarray(im)[None])[0] for im in imgs]),
                      out / f"probe_{step:06d}.png", nrow=12)
            csv_append(out / "probe.csv", ["step", "colour", "shape_colour", "one_object", "time"],
                       [step, r["colour"], r["shape_colour"], r["one_object"], time.strftime("%H:%M:%S")])
            log(f"unet: probe at step {step}: colour {r['colour']:.2f} shape+colour {r['shape_colour']:.2f} "
                f"one object {r['one_object']:.2f} ({time.time() - tp:.0f}s)")
            unet.train()
            text.train()
        if time.time() - t_ck > args.ckpt_minutes * 60 or step == total:
            atomic_torch_save({"unet": unet.state_dict(), "text": text.state_dict(),
                               "ema_unet": ema_unet.state_dict(), "ema_text": ema_text.state_dict(),
                               "opt": opt.state_dict(), "step": step}, ck)
            log.add_time("unet", time.time() - t_ck)
            log(f"unet: checkpoint at step {step}")
            t_ck = time.time()
    log.add_time("unet", time.time() - t_ck)
    atomic_torch_save({"ema_unet": ema_unet.state_dict(), "ema_text": ema_text.state_dict(), "step": step}, final)


# --------------------------------------------------------------------------- stage 5: export

def load_trained(args, out: Path, from_checkpoint: bool = False):
    """(source file, its state, VAE, UNet, text encoder) with the EMA weights of ``unet_final.pt``,
    or of the latest ``unet_ckpt.pt`` when asked or when training has not finished, in eval mode."""
    import torch
    from diffusers import UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    src = out / "unet_final.pt"
    if from_checkpoint or not src.exists():
        src = out / "unet_ckpt.pt"
    if not src.exists():
        raise SystemExit(f"error: {out} has no unet_final.pt or unet_ckpt.pt; run the 'unet' stage first")
    state = torch.load(src, weights_only=False, map_location="cpu")
    text = CLIPTextModel(CLIPTextConfig(**text_config(args.text_hidden)))
    text.load_state_dict(state["ema_text"])
    unet = UNet2DConditionModel(**unet_config(args))
    unet.load_state_dict(state["ema_unet"])
    vae = build_vae(args)
    vae.load_state_dict(torch.load(out / "vae_norm.pt", map_location="cpu"))
    return src, state, vae.eval(), unet.eval(), text.eval()


def stage_export(args, out: Path, log: Log, from_checkpoint: bool = False) -> Path:
    import shutil
    import tempfile

    import torch

    src, state, vae, unet, text = load_trained(args, out, from_checkpoint)
    with tempfile.TemporaryDirectory() as tmp:
        tok = build_tokenizer(Path(tmp))
        pipe = make_pipeline(vae, unet, text, tok)
        pipe.to(torch.float16)
        target = Path(args.export)
        stage = target.with_name("." + target.name + ".tmp")
        shutil.rmtree(stage, ignore_errors=True)
        pipe.save_pretrained(stage, safe_serialization=True)
    info = {"steps": int(state["step"]), "source": src.name, "seed": args.seed,
            "corpus": {"name": "shapes-laion", "n": args.corpus_n, "seed": args.corpus_seed,
                       "split": "train", "subset": args.n_train},
            "script": "scripts/train_builtin_generator.py",
            # wall seconds per stage on the training machine (build/training/generator/times.json)
            "stage_seconds": json.loads((out / "times.json").read_text()) if (out / "times.json").exists() else {}}
    (stage / "training.json").write_text(json.dumps(info, indent=2) + "\n")
    shutil.rmtree(target, ignore_errors=True)
    os.replace(stage, target)
    size = sum(p.stat().st_size for p in target.rglob("*") if p.is_file())
    log(f"export: {target} ({size / 1e6:.1f} MB) from {src.name} at step {state['step']}")
    return target


# --------------------------------------------------------------------------- main

def parse_args(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default=str(ROOT / "build" / "training" / "generator"))
    ap.add_argument("--export", default=str(ROOT / "bench" / "models" / "builtin" / "shapes-ldm"))
    ap.add_argument("--stages", default="data,vae,latents,text,unet,export")
    ap.add_argument("--from-checkpoint", action="store_true", help="export the latest UNet checkpoint")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto",
                    help="auto: CUDA when torch sees one, else the CPU")
    ap.add_argument("--corpus-n", type=int, default=100_000)
    ap.add_argument("--corpus-seed", type=int, default=0)
    ap.add_argument("--n-train", type=int, default=100_000,
                    help="rows of the train split to use (all 80,444 by default)")
    ap.add_argument("--vae-from", default=None,
                    help="a pipeline directory whose VAE to reuse instead of training one")
    # f4 (16x16 latents), not f8: the f8 VAE read shape back at 0.867 on reconstructions (small
    # stars became triangles), the f4 at 0.982 (docs/generator-recipe-ablations.md).
    ap.add_argument("--vae-factor", type=int, choices=(4, 8), default=4,
                    help="spatial down-sampling of the VAE: 8 -> 8x8 latents, 4 -> 16x16")
    # 4 latent channels at f4 (12x compression).  The f8 VAE of the first version needed 8: with 4
    # (48x) it averaged hues (red and yellow came back orange, small stars lost their points).
    ap.add_argument("--latent-channels", type=int, default=4)
    # Small at 16x16 and no attention there (--attn-levels 0,1,1): that keeps the training step at
    # ~0.5 s (batch 64, 2 cores) and demo inference above 4 img/s; see --attn-levels.
    ap.add_argument("--unet-channels", default="48,96,128")
    ap.add_argument("--cross-attn-all", action="store_true")
    ap.add_argument("--attn-levels", default="0,1,1",
                    help="0/1 per UNet level, highest resolution first, e.g. 0,1,1: self- and cross-attention "
                         "at 16x16 cost 2.3x the training step and 2.5x the inference (measured 2026-12-03)")
    ap.add_argument("--snr-gamma", type=float, default=0.0,
                    help="Min-SNR-gamma loss weighting (Hang et al. 2023; 5 in the paper); 0 = off")
    # the composition categories the first version failed, twice as often (the iconic share falls
    # from 3.3% to 2.3% of rows; memorization is the LoRA variant's job)
    ap.add_argument("--oversample", default="position:2,binding:2,counting:2",
                    help="category:weight,... sampling weights of training rows (e.g. position:2,binding:2)")
    # pretrained + 0.1x: the largest conditioning gains of the ablations (docs/generator-recipe-ablations.md)
    ap.add_argument("--text-init", choices=("scratch", "pretrained"), default="pretrained",
                    help="start the text encoder from scratch or from the contrastive 'text' stage")
    ap.add_argument("--text-lr-scale", type=float, default=0.1,
                    help="text encoder learning rate as a fraction of the UNet's (0 = frozen)")
    ap.add_argument("--text-steps", type=int, default=1000)
    ap.add_argument("--text-batch", type=int, default=256)
    ap.add_argument("--text-lr", type=float, default=2e-3)
    ap.add_argument("--vae-steps", type=int, default=3000)
    ap.add_argument("--vae-batch", type=int, default=16)
    ap.add_argument("--vae-lr", type=float, default=2e-3)
    ap.add_argument("--vae-kl", type=float, default=1e-4)
    ap.add_argument("--unet-steps", type=int, default=7000)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--unet-lr", type=float, default=5e-4)
    ap.add_argument("--warmup", type=int, default=200)
    ap.add_argument("--ema", type=float, default=0.999)
    ap.add_argument("--cond-dropout", type=float, default=0.1)
    ap.add_argument("--text-hidden", type=int, default=64)
    ap.add_argument("--probe-every", type=int, default=2000)
    ap.add_argument("--probe-guidance", type=float, default=5.0)
    ap.add_argument("--ckpt-minutes", type=float, default=4.0)
    return ap.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)

    import torch

    torch.set_num_threads(args.threads)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    log = Log(out)
    (out / "args.json").write_text(json.dumps(vars(args), indent=2))
    stages = args.stages.split(",")
    log(f"start: stages {stages} on {training_device(args)}")
    if "data" in stages:
        stage_data(args, out, log)
    if "vae" in stages:
        stage_vae(args, out, log)
    if "latents" in stages:
        stage_latents(args, out, log)
    if "text" in stages or (args.text_init == "pretrained" and "unet" in stages):
        stage_text(args, out, log)
    if "unet" in stages:
        stage_unet(args, out, log)
    if "export" in stages:
        stage_export(args, out, log, from_checkpoint=args.from_checkpoint)
    log("done")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
