"""Synthetic watermark overlays: deterministic, visible, varied, and never the held-out PIXSTOCK mark."""

import numpy as np
import pytest
from PIL import Image

from audit.probes.watermark.overlays import (KINDS, LOGOS, MIN_CONTRAST, Overlay, add_random_watermark, apply_overlay,
                            brand_name, overlay_mask, random_overlay)
from bench.world import random_scene, render


def _scene(seed: int, size: int = 64) -> np.ndarray:
    return np.asarray(render(random_scene(np.random.default_rng(seed)), size=size))


def test_same_seed_same_pixels_other_seed_other_mark():
    base = _scene(0)
    a, oa = add_random_watermark(base, (7, 3))
    b, ob = add_random_watermark(base, (7, 3))
    c, oc = add_random_watermark(base, (7, 4))
    assert oa == ob and np.array_equal(a, b)
    assert oa != oc and not np.array_equal(a, c)
    assert a.dtype == np.uint8 and a.shape == base.shape


@pytest.mark.parametrize("size, n", [(64, 60), (300, 10)])
def test_every_mark_changes_pixels(size, n):
    """Every random mark changes pixels visibly, even white-on-white ones (contrast rule)."""
    for i in range(n):
        base = _scene(i, size)
        marked, overlay = add_random_watermark(base, (1, i))
        diff = np.abs(marked.astype(int) - base.astype(int)).max(axis=2)
        changed = (diff >= 8).mean()
        assert changed > 0.002, (overlay, changed)
        assert not np.array_equal(marked, base)


def test_white_mark_on_white_is_moved_to_a_contrasting_level():
    white = np.full((64, 64, 3), 255, np.uint8)
    overlay = Overlay("text", "ZENLUX", "", opacity=1.0, scale=0.8, x=0.5, y=0.5, angle=0.0, level=255)
    out = apply_overlay(white, overlay)
    mask = overlay_mask(overlay, 64, 64) > 0.9
    assert mask.any()
    assert (255 - out[mask].astype(int)).min() >= MIN_CONTRAST


def test_family_covers_every_kind_and_logo_and_varies():
    rng = np.random.default_rng(0)
    overlays = [random_overlay(rng) for _ in range(400)]
    assert {o.kind for o in overlays} == set(KINDS)
    assert {o.logo for o in overlays if o.logo} == set(LOGOS)
    for field in ("opacity", "scale", "x", "y", "angle", "level"):
        assert len({getattr(o, field) for o in overlays}) > 5, field
    assert all(0.0 < o.opacity <= 1.0 for o in overlays)


def test_brand_names_are_made_up_and_never_the_held_out_mark():
    rng = np.random.default_rng(1)
    names = [brand_name(rng) for _ in range(2000)]
    assert len(set(names)) > 500
    assert "PIXSTOCK" not in {n.upper() for n in names}


def test_overlay_of_pil_image_and_bad_input():
    base = Image.fromarray(_scene(2)).convert("RGBA")
    out, _ = add_random_watermark(base, 5)
    assert out.shape == (64, 64, 3)
    with pytest.raises(ValueError, match="HWC uint8"):
        apply_overlay(np.zeros((8, 8), np.uint8), random_overlay(np.random.default_rng(0)))
