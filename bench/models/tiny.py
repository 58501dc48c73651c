"""A small randomly initialised Stable Diffusion pipeline, built from configs in code.

It is a placeholder until the built-in world's trained model ships: its images
are noise.  It exists so that generation, resume, import and every later stage
run through the real diffusers code path (``StableDiffusionPipeline``,
``AutoencoderKL``, ``UNet2DConditionModel``, ``CLIPTextModel`` + the real CLIP
tokenizer) on 2 CPU cores in seconds.  Weights are seeded, so every machine
builds byte-identical safetensors.
"""

from __future__ import annotations

from pathlib import Path

TINY_RANDOM_VERSION = "1"
IMAGE_SIZE = 64


def build_tiny_pipeline(seed: int = 0):
    import torch
    from diffusers import AutoencoderKL, DDIMScheduler, StableDiffusionPipeline, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    from bench.models.clip_tokenizer import build_clip_tokenizer

    torch.manual_seed(seed)
    # f8 VAE: 64x64 pixels <-> 8x8x4 latents, like Stable Diffusion's layout.
    vae = AutoencoderKL(
        in_channels=3, out_channels=3, latent_channels=4,
        down_block_types=("DownEncoderBlock2D",) * 4, up_block_types=("UpDecoderBlock2D",) * 4,
        block_out_channels=(16, 32, 32, 32), layers_per_block=1, norm_num_groups=8,
        sample_size=IMAGE_SIZE,
    )
    unet = UNet2DConditionModel(
        sample_size=IMAGE_SIZE // 8, in_channels=4, out_channels=4, layers_per_block=1,
        block_out_channels=(32, 64), down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"), cross_attention_dim=32,
        attention_head_dim=8, norm_num_groups=8,
    )
    text_encoder = CLIPTextModel(CLIPTextConfig(
        vocab_size=49408, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
        num_attention_heads=4, max_position_embeddings=77, bos_token_id=49406,
        eos_token_id=49407, pad_token_id=49407,
    ))
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        tokenizer = build_clip_tokenizer(tmp)
    scheduler = DDIMScheduler(
        beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear",
        clip_sample=False, set_alpha_to_one=False, steps_offset=1,
    )
    return StableDiffusionPipeline(
        vae=vae, unet=unet, text_encoder=text_encoder, tokenizer=tokenizer, scheduler=scheduler,
        safety_checker=None, feature_extractor=None, requires_safety_checker=False,
    )


def ensure_tiny_pipeline_dir(cache_root: Path) -> Path:
    """Build the tiny pipeline once into the user cache and return its directory.

    The directory is a standard ``save_pretrained`` layout (safetensors), so it is
    loaded by the same ``from_pretrained`` code that serves hub ids.
    """
    import os
    import shutil
    import tempfile

    target = cache_root / f"tiny-random-v{TINY_RANDOM_VERSION}"
    if (target / "model_index.json").exists():
        return target
    cache_root.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".tiny-", dir=cache_root))
    try:
        build_tiny_pipeline().save_pretrained(tmp, safe_serialization=True)
        try:
            os.replace(tmp, target)  # atomic: another process may have won the race
        except OSError:
            if not (target / "model_index.json").exists():
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target


def write_random_open_clip(folder: str | Path, model_cfg: dict, seed: int = 0) -> Path:
    """An open_clip model with seeded random weights, in the evaluator-CLIP folder layout.

    (``open_clip_config.json`` + ``open_clip_model.safetensors``, what
    ``clip:local-dir:<folder>`` loads.)  For tests and benchmarks that must run
    the real CLIP code path offline before a trained evaluator exists.
    """
    import json
    import warnings

    import open_clip
    import torch
    from safetensors.torch import save_file

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # open_clip warns about QuickGELU defaults
        model = open_clip.CLIP(**model_cfg)
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(folder / "open_clip_model.safetensors"))
    (folder / "open_clip_config.json").write_text(json.dumps({"model_cfg": model_cfg, "preprocess_cfg": {}}))
    return folder
