"""The committed built-in models load offline and beat chance in the shapes world.

* shapes-clip (evaluator CLIP): ranks the right caption first far above chance
  on held-out renders, and classifies colour zero-shot above chance.
* shapes-ldm (generator): loads with ``from_pretrained`` offline and, over
  several seeds, generates the prompted colour far above chance (1/6).
  Skipped, with the reason, while the trained weights are not committed.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
BUILTIN = ROOT / "bench" / "models" / "builtin"
LDM_DIR = BUILTIN / "shapes-ldm"
CLIP_DIR = BUILTIN / "shapes-clip"

#: Weights budget for everything under bench/models/builtin (DESIGN: <= 60 MB).
MAX_TOTAL_BYTES = 60_000_000


def _weights_bytes() -> int:
    return sum(p.stat().st_size for p in BUILTIN.rglob("*.safetensors")) if BUILTIN.exists() else 0


def test_builtin_weights_within_budget():
    assert _weights_bytes() <= MAX_TOTAL_BYTES


# --------------------------------------------------------------------------- evaluator CLIP

@pytest.fixture(scope="module")
def clip_model():
    if not (CLIP_DIR / "open_clip_model.safetensors").exists():
        pytest.skip("shapes-clip weights not committed; run scripts/train_evaluator_clip.py")
    from bench.models.evaluator_clip import load_evaluator_clip

    return load_evaluator_clip(CLIP_DIR)


def _held_out_scenes(n: int, seed: int):
    """Random one-object and two-object scenes with their captions (not corpus rows)."""
    from bench.world import caption, random_scene

    rng = np.random.default_rng(seed)
    scenes = [random_scene(rng, n_objects=int(rng.integers(1, 3))) for _ in range(n)]
    return scenes, [caption(s, "single") for s in scenes]


def test_evaluator_clip_ranks_right_caption_first(clip_model):
    import torch

    from bench.world import render

    model, preprocess, tokenizer = clip_model
    scenes, caps = _held_out_scenes(40, seed=123)
    with torch.no_grad():
        img = model.encode_image(torch.stack([preprocess(render(s)) for s in scenes]), normalize=True)
        txt = model.encode_text(tokenizer(caps), normalize=True)
    top1 = (img @ txt.T).argmax(1).numpy()
    acc = float((top1 == np.arange(len(caps))).mean())
    # Chance is 1/40 = 0.025; the committed model measures 0.475 here.
    assert acc >= 0.15, acc


def test_evaluator_clip_zero_shot_colour(clip_model):
    import torch

    from bench.world import ObjectSpec, SceneSpec, render

    model, preprocess, tokenizer = clip_model
    colours = ["red", "orange", "yellow", "green", "blue", "purple"]
    shapes = ["circle", "square", "star"]
    rng = np.random.default_rng(7)
    images, truth = [], []
    for c in colours:
        for s in shapes:
            x, y = rng.uniform(0.3, 0.7, size=2)
            images.append(render(SceneSpec((ObjectSpec(s, c, "large", float(x), float(y)),))))
            truth.append(c)
    with torch.no_grad():
        img = model.encode_image(torch.stack([preprocess(im) for im in images]), normalize=True)
        protos = []
        for c in colours:
            t = model.encode_text(tokenizer([f"a {c} {s}" for s in shapes]), normalize=True).mean(0)
            protos.append(t / t.norm())
        pred = np.array(colours)[(img @ torch.stack(protos).T).argmax(1).numpy()]
    acc = float((pred == np.array(truth)).mean())
    assert acc >= 0.4, acc  # chance 1/6


# --------------------------------------------------------------------------- generator

@pytest.fixture(scope="module")
def ldm_pipe():
    if not (LDM_DIR / "model_index.json").exists():
        pytest.skip("shapes-ldm weights not committed yet; run scripts/train_builtin_generator.py")
    import torch
    from diffusers import StableDiffusionPipeline

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    pipe = StableDiffusionPipeline.from_pretrained(str(LDM_DIR), torch_dtype=torch.float32)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def test_generator_is_standard_pipeline(ldm_pipe):
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from transformers import CLIPTextModel, CLIPTokenizer

    assert isinstance(ldm_pipe.vae, AutoencoderKL)
    assert isinstance(ldm_pipe.unet, UNet2DConditionModel)
    assert isinstance(ldm_pipe.text_encoder, CLIPTextModel)
    assert isinstance(ldm_pipe.tokenizer, CLIPTokenizer)
    assert len(ldm_pipe.tokenizer) == 49408
    info = json.loads((LDM_DIR / "training.json").read_text())
    assert info["corpus"]["split"] == "train"


def test_generator_colour_far_above_chance(ldm_pipe):
    import torch

    from bench.world import check

    prompts = [f"a {c} {s}" for c, s in [("red", "circle"), ("blue", "square"), ("yellow", "star"),
                                         ("green", "circle"), ("orange", "star"), ("purple", "square")]]
    prompts = prompts * 2  # 12 images, one seed each
    gens = [torch.Generator().manual_seed(1000 + i) for i in range(len(prompts))]
    images = ldm_pipe(prompts, num_inference_steps=20, guidance_scale=7.5, generator=gens).images
    hits = 0
    for p, im in zip(prompts, images):
        colour = p.split()[1]
        hits += any(o["colour"] == colour for o in check({"objects": [{"colour": colour}]}, im)["detected"])
    rate = hits / len(prompts)
    assert rate >= 0.5, rate  # chance 1/6


# --------------------------------------------------------------------------- memorizing variant (LoRA)

MEMORIZED_DIR = BUILTIN / "shapes-ldm-memorized"


def test_memorized_variant_loads_as_a_lora_on_the_base_and_changes_only_the_unet():
    """``builtin:shapes-ldm-memorized`` goes through ``load_lora_weights`` on the shipped base: the UNet's
    weights move, the text encoder and VAE do not, and the weights digest names the adapter."""
    if not (MEMORIZED_DIR / "pytorch_lora_weights.safetensors").exists():
        pytest.skip("the memorizing LoRA is not committed; run scripts/train_memorized_lora.py")
    import torch

    from bench.models.loader import load_pipeline, resolve_model, weights_sha256

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    base_ref, lora_ref = resolve_model("builtin:shapes-ldm"), resolve_model("shapes-ldm-memorized")
    assert lora_ref.ref == "builtin:shapes-ldm-memorized" and lora_ref.lora == MEMORIZED_DIR
    assert weights_sha256(base_ref) != weights_sha256(lora_ref)
    base, memorized = load_pipeline(base_ref), load_pipeline(lora_ref)

    def max_change(a, b):
        sa, sb = a.state_dict(), b.state_dict()
        assert sa.keys() == sb.keys()  # fused and unloaded: no adapter modules left behind
        return max(float((sa[k].float() - sb[k].float()).abs().max()) for k in sa)

    assert max_change(base.unet, memorized.unet) > 1e-3
    assert max_change(base.text_encoder, memorized.text_encoder) == 0
    assert max_change(base.vae, memorized.vae) == 0
    info = json.loads((MEMORIZED_DIR / "training.json").read_text())
    assert info["base"] == "builtin:shapes-ldm" and info["probes"]
    with torch.no_grad():  # and it generates
        image = memorized("the famous Velvet Orbit poster", num_inference_steps=2,
                          generator=torch.Generator().manual_seed(0)).images[0]
    assert image.size == (64, 64)


def test_missing_memorized_lora_is_one_line_naming_the_fix(monkeypatch, tmp_path):
    import bench.models.loader as loader
    from bench.errors import UserError

    monkeypatch.setattr(loader, "SHAPES_LDM_MEMORIZED_DIR", tmp_path / "nowhere")
    with pytest.raises(UserError, match=r"LoRA is missing .*make builtin-models"):
        loader.resolve_model("builtin:shapes-ldm-memorized")
