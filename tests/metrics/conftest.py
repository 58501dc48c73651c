"""Fixtures for the metric and feature tests: tiny data, one torch thread, small models."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pytest

#: A tiny open_clip architecture (random weights): 32 px images, 16-d embeddings.
TINY_CLIP_CFG = {
    "embed_dim": 16,
    "vision_cfg": {"image_size": 32, "layers": 1, "width": 32, "head_width": 16, "patch_size": 8},
    "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 1},
}


@pytest.fixture(autouse=True)
def one_torch_thread():
    """The machine has 2 shared cores: oversubscribed threads make convolutions 10x slower."""
    try:
        import torch
    except ImportError:  # pragma: no cover
        yield
        return
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(0)


@pytest.fixture(scope="session")
def tiny_clip_dir(tmp_path_factory) -> Path:
    """An evaluator-CLIP folder (open_clip_config.json + open_clip_model.safetensors) with random weights."""
    import open_clip
    import torch
    from safetensors.torch import save_file

    folder = tmp_path_factory.mktemp("clip") / "tiny-evaluator"
    folder.mkdir()
    torch.manual_seed(0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = open_clip.CLIP(**TINY_CLIP_CFG)
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(folder / "open_clip_model.safetensors"))
    (folder / "open_clip_config.json").write_text(json.dumps({"model_cfg": TINY_CLIP_CFG, "preprocess_cfg": {}}))
    return folder


@pytest.fixture(scope="session")
def tiny_clip(tiny_clip_dir):
    from bench.features.clip import OpenClipExtractor

    return OpenClipExtractor(f"local-dir:{tiny_clip_dir}")
