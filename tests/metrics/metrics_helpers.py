"""Helpers shared by the metric and feature tests, imported as a plain module.

Not a conftest.py: a second conftest module would shadow tests/conftest.py for
``from conftest import ...`` in other test files.
"""

from __future__ import annotations

import numpy as np

FAKE_INCEPTION_KEY = "inception-v3-pool3__w0000000000000000__clean-bicubic-299__float32"
FAKE_OTHER_KEY = "efficientnet-lite0__w1111111111111111__clean-bicubic-224__float32"

#: A tiny open_clip architecture (random weights): 32 px images, 16-d embeddings.
TINY_CLIP_CFG = {
    "embed_dim": 16,
    "vision_cfg": {"image_size": 32, "layers": 1, "width": 32, "head_width": 16, "patch_size": 8},
    "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 1},
}


def noise_images(n: int, seed: int = 0, size: tuple[int, int] = (40, 48)) -> np.ndarray:
    """n smooth random RGB images (uint8 NHWC): low-frequency noise, so features vary between them."""
    r = np.random.default_rng(seed)
    small = r.integers(0, 256, (n, 5, 6, 3)).astype(np.float64)
    h, w = size
    ys = np.linspace(0, 4, h)[:, None]
    xs = np.linspace(0, 5, w)[None, :]
    y0, x0 = np.floor(ys).astype(int).clip(0, 3), np.floor(xs).astype(int).clip(0, 4)
    fy, fx = (ys - y0)[..., None], (xs - x0)[..., None]
    out = np.empty((n, h, w, 3))
    for i in range(n):
        s = small[i]
        out[i] = (
            (1 - fy) * (1 - fx) * s[y0, x0]
            + (1 - fy) * fx * s[y0, x0 + 1]
            + fy * (1 - fx) * s[y0 + 1, x0]
            + fy * fx * s[y0 + 1, x0 + 1]
        )
    return out.round().clip(0, 255).astype(np.uint8)
