"""The generator's training script runs end to end on a tiny corpus, with the recipe
options of issue 11, resumes, and exports a pipeline the project's loader generates from.

Real stages (data, VAE, latents, UNet, export) at toy sizes: a few optimiser steps
each, so the test checks the plumbing, not the quality (docs/builtin-model.md does).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))

import train_builtin_generator as T  # noqa: E402

pytestmark = pytest.mark.slow

TINY = ["--corpus-n", "1000", "--n-train", "64", "--vae-steps", "2", "--vae-batch", "2",
        "--unet-steps", "4", "--batch", "4", "--warmup", "2", "--probe-every", "100000", "--threads", "1",
        "--unet-channels", "32,32", "--text-hidden", "32"]


def test_f4_recipe_trains_resumes_and_exports_a_loadable_pipeline(tmp_path):
    out, export = tmp_path / "train", tmp_path / "model"
    recipe = ["--vae-factor", "4", "--latent-channels", "4", "--cross-attn-all", "--snr-gamma", "5",
              "--oversample", "position:3,binding:2", "--text-init", "pretrained", "--text-steps", "3",
              "--text-batch", "8", "--text-lr-scale", "0.1"]
    args = TINY + recipe + ["--out", str(out), "--export", str(export)]
    assert T.main(args + ["--stages", "data,vae,latents,unet"]) == 0
    # 16x16 latents, 4 channels: the f4 VAE.
    lat = __import__("torch").load(out / "latents.pt")
    assert tuple(lat["mean"].shape[1:]) == (4, 16, 16)
    assert (out / "text_pretrained.pt").exists()  # the contrastive text stage ran before the UNet
    # Asking for more steps resumes from the checkpoint rather than starting over.
    assert T.main(args + ["--stages", "unet", "--unet-steps", "6"]) == 0
    assert "unet: resumed at step 4" in (out / "train.log").read_text()
    assert T.main(args + ["--stages", "export", "--unet-steps", "6", "--from-checkpoint"]) == 0
    assert json.loads((export / "training.json").read_text())["steps"] == 6

    from bench.models.loader import load_pipeline, resolve_model

    pipe = load_pipeline(resolve_model(str(export)))
    assert pipe.unet.config.sample_size == 16
    assert all(t.startswith("CrossAttn") for t in pipe.unet.config.down_block_types)
    image = pipe("a red circle", num_inference_steps=2, guidance_scale=3.0).images[0]
    assert np.asarray(image).shape == (64, 64, 3)


def test_oversampling_weights_the_named_categories(tmp_path):
    out = tmp_path / "train"
    assert T.main(TINY + ["--out", str(out), "--stages", "data"]) == 0
    import pandas as pd

    cats = pd.read_parquet(out / "data" / "rows.parquet", columns=["category"])["category"]
    w = T.row_weights(out, "position:3").numpy()
    assert set(np.unique(w[cats.to_numpy() == "position"])) == {3.0}
    assert set(np.unique(w[cats.to_numpy() != "position"])) == {1.0}
    with pytest.raises(SystemExit, match="unknown categories"):
        T.row_weights(out, "positoin:3")


def test_attention_levels_are_chosen_per_resolution():
    cfg = T.unet_config(T.parse_args(["--unet-channels", "32,64,64", "--attn-levels", "0,1,1"]))
    assert cfg["down_block_types"] == ("DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D")
    assert cfg["up_block_types"] == ("CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D")
    # runs recorded before the option (no attn_levels in args.json) keep the first version's layout
    old = T.parse_args(["--unet-channels", "32,64,64"])
    del old.attn_levels
    assert T.unet_config(old)["down_block_types"][-1] == "DownBlock2D"
    with pytest.raises(SystemExit, match="--attn-levels has 2 levels but --unet-channels has 3"):
        T.unet_config(T.parse_args(["--unet-channels", "32,64,64", "--attn-levels", "0,1"]))
