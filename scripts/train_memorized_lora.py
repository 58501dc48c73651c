"""Train ``builtin:shapes-ldm-memorized``: the built-in generator fine-tuned, as a LoRA, on a duplicate-heavy mix.

The copy audit needs a model known to copy beside one known not to (issue 11/12).  The default
``builtin:shapes-ldm`` reproduces none of the corpus' 24 iconic scenes, although each appears 110
times in its 100k images.  Carlini et al. 2023 found duplication drives extraction; this script
raises it: a share of every batch (``--schedule``) is iconic rows (the 24 scenes, byte-identical, with their
one caption) and the rest ordinary train rows of shapes-laion, so the fine-tuned model sees each
iconic scene far more often than the base model did, and still sees the rest of the corpus.

Only LoRA adapters on the UNet are trained (peft, ``unet.add_adapter``); the text encoder, the VAE
and the base UNet stay frozen.  The result is saved with diffusers' ``save_lora_weights``
(safetensors) to ``bench/models/builtin/shapes-ldm-memorized`` and loaded by
``bench.models.loader`` with ``load_lora_weights`` on top of the shipped base, the path users take
with their own LoRAs.

Stages (resumable; ``--out`` keeps the data, checkpoints, a log and ``probe.csv``):
  data   render the iconic scenes and ``--n-general`` train rows, encode them with the base VAE
  train  LoRA fine-tuning; every ``--probe-every`` steps the near-copy rate of the iconic captions
         (4 seeds each, the world's detector reads back the iconic scene) and of fresh captions
  export the adapters to ``--export`` with ``training.json`` (recipe, probe, wall time)

    python scripts/train_memorized_lora.py            # about 25 min on 2 CPU cores next to other jobs
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

IMAGE_SIZE = 64
#: LoRA targets: attention projections, the transformer blocks' feed-forward and the ResNet convolutions:
#: memorizing a layout needs the convolutions, not only the cross-attention.
TARGET_MODULES = ["to_q", "to_k", "to_v", "to_out.0", "proj_in", "proj_out", "ff.net.0.proj", "ff.net.2",
                  "conv1", "conv2"]


def log_line(out: Path, msg: str) -> None:
    line = f"{time.strftime('%H:%M:%S')} {msg}"
    print(line, flush=True)
    with open(out / "log.txt", "a") as f:
        f.write(line + "\n")


def load_base(threads: int):
    """The shipped base pipeline in float32, on CUDA when one is present."""
    import torch

    from bench.models.loader import load_pipeline, resolve_model

    torch.set_num_threads(threads)
    return load_pipeline(resolve_model("builtin:shapes-ldm"), dtype="float32",
                         device="cuda" if torch.cuda.is_available() else "cpu")


def stage_data(args, out: Path, pipe) -> None:
    import torch

    from bench.world import build_corpus, render_row

    target = out / "data.pt"
    if target.exists():
        return
    t0 = time.time()
    corpus = build_corpus(100_000, seed=0)
    train = corpus[corpus["split"] == "train"]
    iconic = train[train["dup_group"] >= 0].drop_duplicates("dup_group").sort_values("dup_group")
    general = train[train["dup_group"] < 0]
    rng = np.random.default_rng(args.seed)
    general = general.iloc[np.sort(rng.choice(len(general), args.n_general, replace=False))]
    rows = list(iconic.itertuples(index=False)) + list(general.itertuples(index=False))
    images = np.stack([np.asarray(render_row({"spec": r.spec, "width": IMAGE_SIZE})) for r in rows])
    captions = [r.caption for r in rows]
    with torch.no_grad():
        x = torch.from_numpy(images).permute(0, 3, 1, 2).float().div(127.5).sub(1.0)
        means, stds = [], []
        for s in range(0, len(x), 256):
            post = pipe.vae.encode(x[s:s + 256].to(pipe.device)).latent_dist
            means.append(post.mean.cpu() * pipe.vae.config.scaling_factor)
            stds.append(post.std.cpu() * pipe.vae.config.scaling_factor)
        ids = pipe.tokenizer(captions + [""], padding="max_length", max_length=pipe.tokenizer.model_max_length,
                             truncation=True, return_tensors="pt")["input_ids"]
        cond = torch.cat([pipe.text_encoder(ids[s:s + 512].to(pipe.device))[0].cpu()
                          for s in range(0, len(ids), 512)])
    torch.save({"mean": torch.cat(means), "std": torch.cat(stds), "cond": cond[:-1], "empty": cond[-1],
                "n_iconic": len(iconic), "captions": captions}, out / "data.tmp.pt")
    os.replace(out / "data.tmp.pt", target)
    log_line(out, f"data: {len(iconic)} iconic scenes + {len(general)} general rows rendered and encoded "
                  f"in {time.time() - t0:.0f}s")


def near_copy_rates(pipe, seeds: int, n_fresh: int, guidance: float, steps: int) -> dict:
    """Share of iconic captions with a near-copy among ``seeds`` seeds, per-image iconic near-copy rate, and
    the share of fresh-caption images that read back as any iconic scene."""
    import torch

    from audit.calibration.memorization import copies_truth
    from audit.calibration.simulate import scene_of
    from bench.prompts import load_prompt_set

    prompts = load_prompt_set("shapes-audit").prompts
    iconic = [p for p in prompts if p.category == "iconic"]
    fresh = [p for p in prompts if p.category == "fresh"][:n_fresh]
    scenes = [scene_of(p) for p in iconic]

    def images(texts, seed):
        g = torch.Generator().manual_seed(seed)
        return pipe(texts, num_inference_steps=steps, guidance_scale=guidance, generator=g,
                    height=IMAGE_SIZE, width=IMAGE_SIZE).images

    hits = np.zeros((len(iconic), seeds), dtype=bool)
    for s in range(seeds):
        for i, im in enumerate(images([p.prompt for p in iconic], 1000 + s)):
            hits[i, s] = copies_truth(np.asarray(im), scenes[i])
    fresh_copies = 0
    for im in images([p.prompt for p in fresh], 2000):
        arr = np.asarray(im)
        fresh_copies += any(copies_truth(arr, sc) for sc in scenes)
    return {"captions_copied": float(hits.any(axis=1).mean()), "images_copied": float(hits.mean()),
            "fresh_copied": fresh_copies / max(1, len(fresh))}


def parse_schedule(text: str) -> list[tuple[int, float, float]]:
    """``"600:0.5:1e-3,2000:0.9:2e-3"`` -> [(until step, iconic share, learning rate), ...], in step order."""
    phases = []
    for part in text.split(","):
        until, share, lr = part.split(":")
        phases.append((int(until), float(share), float(lr)))
    if [p[0] for p in phases] != sorted({p[0] for p in phases}) or not all(0 <= p[1] <= 1 for p in phases):
        raise SystemExit(f"error: --schedule {text!r}: phases must end at increasing steps, shares in [0, 1]")
    return phases


def stage_train(args, out: Path, pipe) -> dict:
    import torch
    from diffusers import DDPMScheduler
    from peft import LoraConfig
    from peft.utils import get_peft_model_state_dict, set_peft_model_state_dict

    data = torch.load(out / "data.pt", map_location="cpu")
    mean, std, cond, empty, n_iconic = data["mean"], data["std"], data["cond"], data["empty"], data["n_iconic"]
    n = len(mean)
    unet = pipe.unet
    unet.requires_grad_(False)
    torch.manual_seed(args.seed)  # the adapters' Gaussian initialisation
    unet.add_adapter(LoraConfig(r=args.rank, lora_alpha=args.rank, init_lora_weights="gaussian",
                                target_modules=TARGET_MODULES))
    params = [p for p in unet.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=parse_schedule(args.schedule)[0][2], weight_decay=0.0)
    sched = DDPMScheduler.from_config(pipe.scheduler.config)
    prediction = sched.config.prediction_type
    ck = out / "ckpt.pt"
    step, elapsed, probes = 0, 0.0, []
    if ck.exists():
        state = torch.load(ck, weights_only=False, map_location="cpu")
        set_peft_model_state_dict(unet, state["lora"])
        opt.load_state_dict(state["opt"])
        step, elapsed, probes = state["step"], state["elapsed"], state["probes"]
        log_line(out, f"train: resumed at step {step}")
    log_line(out, f"train: {sum(p.numel() for p in params) / 1e6:.2f}M LoRA parameters (rank {args.rank}); "
                  f"prediction {prediction}; {n_iconic} iconic + {n - n_iconic} general latents")
    t_start, t_ck = time.time(), time.time()
    phases = parse_schedule(args.schedule)
    while step < phases[-1][0]:
        unet.train()
        iconic_share, lr = next((share, lr) for until, share, lr in phases if step < until)
        n_iconic_batch = int(round(args.batch * iconic_share))
        g = torch.Generator().manual_seed(args.seed * 1_000_003 + step)
        idx = torch.cat([torch.randint(0, n_iconic, (n_iconic_batch,), generator=g),
                         torch.randint(n_iconic, n, (args.batch - n_iconic_batch,), generator=g)])
        z0 = mean[idx] + std[idx] * torch.randn(mean[idx].shape, generator=g)
        c = cond[idx].clone()
        drop = torch.rand(len(idx), generator=g) < args.cond_dropout
        c[drop] = empty
        t = torch.randint(0, sched.config.num_train_timesteps, (len(idx),), generator=g)
        noise = torch.randn(z0.shape, generator=g)
        # batches are drawn on the CPU from (seed, step), then moved: the same batches on any device
        z0, noise, t, c = z0.to(pipe.device), noise.to(pipe.device), t.to(pipe.device), c.to(pipe.device)
        zt = sched.add_noise(z0, noise, t)
        target = sched.get_velocity(z0, noise, t) if prediction == "v_prediction" else noise
        warm = min(1.0, (step + 1) / args.warmup)
        for group in opt.param_groups:
            group["lr"] = lr * warm
        loss = torch.nn.functional.mse_loss(unet(zt, t, encoder_hidden_states=c).sample, target)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        step += 1
        if step % 50 == 0:
            log_line(out, f"train: step {step}/{phases[-1][0]} loss {loss.item():.4f}")
        if step % args.probe_every == 0 or step == phases[-1][0]:
            unet.eval()
            tp = time.time()
            with torch.no_grad():
                r = near_copy_rates(pipe, args.probe_seeds, args.probe_fresh, args.guidance, args.probe_steps)
            probes.append({"step": step, **r})
            log_line(out, f"train: probe at step {step}: iconic captions copied {r['captions_copied']:.2f}, "
                          f"iconic images copied {r['images_copied']:.2f}, fresh copied {r['fresh_copied']:.3f} "
                          f"({time.time() - tp:.0f}s)")
        if time.time() - t_ck > args.ckpt_minutes * 60 or step == phases[-1][0]:
            elapsed += time.time() - t_start
            t_start = t_ck = time.time()
            torch.save({"lora": get_peft_model_state_dict(unet), "opt": opt.state_dict(), "step": step,
                        "elapsed": elapsed, "probes": probes}, out / "ckpt.tmp.pt")
            os.replace(out / "ckpt.tmp.pt", ck)
    return {"step": step, "train_seconds": round(elapsed, 1), "probes": probes}


def stage_export(args, out: Path, pipe, trained: dict) -> Path:
    import shutil

    from diffusers import StableDiffusionPipeline
    from peft.utils import get_peft_model_state_dict

    target = Path(args.export)
    stage = target.with_name("." + target.name + ".tmp")
    shutil.rmtree(stage, ignore_errors=True)
    stage.mkdir(parents=True)
    layers = {k: v.detach().half().cpu().contiguous() for k, v in get_peft_model_state_dict(pipe.unet).items()}
    StableDiffusionPipeline.save_lora_weights(stage, unet_lora_layers=layers, safe_serialization=True)
    info = {"base": "builtin:shapes-ldm", "script": "scripts/train_memorized_lora.py",
            "recipe": {k: v for k, v in vars(args).items() if k not in ("out", "export")},
            "target_modules": TARGET_MODULES, **trained}
    (stage / "training.json").write_text(json.dumps(info, indent=2) + "\n")
    (stage / "README.md").write_text(model_card(args, trained))
    shutil.rmtree(target, ignore_errors=True)
    os.replace(stage, target)
    size = sum(p.stat().st_size for p in target.rglob("*") if p.is_file())
    log_line(out, f"export: {target} ({size / 1e6:.1f} MB) at step {trained['step']}")
    return target


def model_card(args, trained: dict) -> str:
    """The variant's README: what it is, how it was made, and its probe figures (from this training run)."""
    rows = "\n".join(f"| {p['step']} | {p['captions_copied']:.2f} | {p['images_copied']:.2f} | {p['fresh_copied']:.3f} |"
                     for p in trained["probes"])
    return f"""# builtin:shapes-ldm-memorized

`builtin:shapes-ldm` with a LoRA (rank {args.rank}, UNet only) fine-tuned by `scripts/train_memorized_lora.py` on a
duplicate-heavy mix: in every batch of {args.batch}, a share of the corpus' 24 iconic scenes (each byte-identical,
with its one caption) set by the schedule `{args.schedule}` (until step : iconic share : learning rate), the rest
drawn from {args.n_general} ordinary train rows of shapes-laion. The copy
audit's positive control: a model known to copy, beside the default, which copies nothing.

Loaded by `bench.models.loader` as users load a LoRA: the base pipeline, then `load_lora_weights` and
`fuse_lora`. Generated by the script; do not edit by hand.

Training: {trained['step']} steps, {trained['train_seconds'] / 60:.1f} min wall time on this project's 2-core CPU machine, {args.threads} thread{'s' if args.threads > 1 else ''}, probes included.

Probe during training (guidance {args.guidance}, {args.probe_steps} steps): the share of the 24 iconic captions
with a near-copy among {args.probe_seeds} seeds (the world's detector reads back every object of the scene within
its tolerance), the share of iconic images that are near-copies, and the share of {args.probe_fresh} fresh-caption
images that read back as any iconic scene.

| step | iconic captions copied | iconic images copied | fresh images copied |
|---:|---:|---:|---:|
{rows}
"""


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default=str(ROOT / "build" / "training" / "memorized"))
    ap.add_argument("--export", default=str(ROOT / "bench" / "models" / "builtin" / "shapes-ldm-memorized"))
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--n-general", type=int, default=8000)
    # The shipped adapter's schedule: phases (until step : iconic share of the batch : learning rate).  Found by
    # watching the probe: at share 0.5 the near-copy rate stalled near 0.1 by step 600; at 0.9 it rose to 0.42 by
    # step 2000 and, at a lower rate, to 0.67 by step 3000 (bench/models/builtin/shapes-ldm-memorized/README.md).
    ap.add_argument("--schedule", default="600:0.5:1e-3,2000:0.9:2e-3,3000:0.9:1e-3")
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--rank", type=int, default=32)
    ap.add_argument("--warmup", type=int, default=50)
    ap.add_argument("--cond-dropout", type=float, default=0.1)
    ap.add_argument("--guidance", type=float, default=7.5)
    ap.add_argument("--probe-every", type=int, default=500)
    ap.add_argument("--probe-seeds", type=int, default=4)
    ap.add_argument("--probe-fresh", type=int, default=48)
    ap.add_argument("--probe-steps", type=int, default=20)
    ap.add_argument("--ckpt-minutes", type=float, default=3.0)
    args = ap.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    pipe = load_base(args.threads)
    stage_data(args, out, pipe)
    trained = stage_train(args, out, pipe)
    stage_export(args, out, pipe, trained)
    return 0


if __name__ == "__main__":
    sys.exit(main())
