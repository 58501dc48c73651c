"""Carlini's tiled L2 (audit.probes.memorization.copy_similarity): a plain-loop reference and its properties."""

import math

import numpy as np
import pytest
from PIL import Image

from audit.probes.memorization.copy_similarity import copy_distance, copy_distances, tile_rms, tiled_l2, to_unit_array
from bench.errors import UserError


def reference_tiled_l2(a: np.ndarray, b: np.ndarray, grid: int) -> float:
    """The definition written out tile by tile, with Python loops (no reshapes)."""
    side = a.shape[0]
    t = side // grid
    worst = 0.0
    for i in range(grid):
        for j in range(grid):
            ta = a[i * t:(i + 1) * t, j * t:(j + 1) * t].astype(np.float64).ravel()
            tb = b[i * t:(i + 1) * t, j * t:(j + 1) * t].astype(np.float64).ravel()
            rms = math.sqrt(sum((x - y) ** 2 for x, y in zip(ta, tb)) / ta.size)
            worst = max(worst, rms)
    return worst


@pytest.fixture
def pair():
    rng = np.random.default_rng(0)
    return rng.random((32, 32, 3)).astype(np.float32), rng.random((32, 32, 3)).astype(np.float32)


@pytest.mark.parametrize("grid", [1, 2, 4, 8])
def test_matches_reference(pair, grid):
    a, b = pair
    assert tiled_l2(a, b, grid) == pytest.approx(reference_tiled_l2(a, b, grid), rel=1e-9)


def test_identical_is_zero_and_symmetric(pair):
    a, b = pair
    assert tiled_l2(a, a) == 0.0
    assert tiled_l2(a, b) == tiled_l2(b, a)
    # black against white everywhere is the largest distance: exactly 1
    assert tiled_l2(np.zeros((16, 16, 3)), np.ones((16, 16, 3))) == 1.0


def test_max_over_tiles_not_mean():
    """One changed tile sets the distance; spreading the same energy thinly gives far less."""
    base = np.full((64, 64, 3), 0.5)
    one_tile = base.copy()
    one_tile[:16, :16] += 0.3  # one of the 16 tiles, changed by 0.3
    assert tiled_l2(base, one_tile) == pytest.approx(0.3)
    # the same squared difference spread over the whole image: 0.3 / sqrt(16) per tile
    spread = base + 0.3 / 4
    assert tiled_l2(base, spread) == pytest.approx(0.075)
    assert tile_rms(base, one_tile)[0, 0] == pytest.approx(0.3)
    assert (tile_rms(base, one_tile).ravel()[1:] == 0).all()


def test_single_changed_tile_raises_the_max(pair):
    a, _ = pair
    b = a.copy()
    before = tiled_l2(a, b)
    b[8:16, 24:32] = 1.0 - b[8:16, 24:32]
    assert tiled_l2(a, b) > before == 0.0


def test_batch_equals_one_by_one():
    rng = np.random.default_rng(1)
    a = rng.random((5, 16, 16, 3))
    b = rng.random((5, 16, 16, 3))
    batched = tiled_l2(a, b)
    assert batched.shape == (5,)
    np.testing.assert_allclose(batched, [tiled_l2(x, y) for x, y in zip(a, b)], rtol=0, atol=0)


def test_resize_independence():
    """An image and its 4x nearest upscale compare as identical after the resize to ``side``."""
    rng = np.random.default_rng(2)
    small = (rng.random((16, 16, 3)) * 255).astype(np.uint8)
    big = np.asarray(Image.fromarray(small).resize((64, 64), Image.NEAREST))
    assert copy_distance(small, big, side=16) == pytest.approx(0.0, abs=1e-6)
    # and the distance is measured at ``side``, whatever the input sizes
    other = (rng.random((16, 16, 3)) * 255).astype(np.uint8)
    assert copy_distance(small, other, side=16) == pytest.approx(
        copy_distance(big, np.asarray(Image.fromarray(other).resize((64, 64), Image.NEAREST)), side=16), abs=1e-6)


def test_unit_scaling_and_pil_input():
    arr = np.full((8, 8, 3), 255, np.uint8)
    unit = to_unit_array(Image.fromarray(arr), side=8)
    assert unit.dtype == np.float32 and unit.max() == 1.0
    assert copy_distances([arr, arr], [arr, np.zeros_like(arr)], side=8, grid=2).tolist() == [0.0, 1.0]


def test_bad_input():
    with pytest.raises(UserError, match="multiple of grid"):
        tiled_l2(np.zeros((10, 10, 3)), np.zeros((10, 10, 3)), grid=4)
    with pytest.raises(UserError, match="different shapes"):
        tiled_l2(np.zeros((8, 8, 3)), np.zeros((16, 16, 3)))
    with pytest.raises(UserError, match="uint8"):
        to_unit_array(np.zeros((8, 8, 3), np.float32))
    with pytest.raises(UserError, match="one partner"):
        copy_distances([np.zeros((8, 8, 3), np.uint8)], [])


def reference_aligned_tiled_l2(a: np.ndarray, b: np.ndarray, grid: int, shift: int) -> float:
    """The aligned distance written out: every tile, every (dy, dx), b's pixels edge-clamped."""
    side = a.shape[0]
    t = side // grid
    worst = 0.0
    for i in range(grid):
        for j in range(grid):
            best = math.inf
            for dy in range(-shift, shift + 1):
                for dx in range(-shift, shift + 1):
                    total, count = 0.0, 0
                    for y in range(i * t, (i + 1) * t):
                        for x in range(j * t, (j + 1) * t):
                            yy, xx = min(max(y + dy, 0), side - 1), min(max(x + dx, 0), side - 1)
                            total += float(((a[y, x].astype(np.float64) - b[yy, xx]) ** 2).sum())
                            count += a.shape[2]
                    best = min(best, math.sqrt(total / count))
            worst = max(worst, best)
    return worst


@pytest.mark.parametrize("grid,shift", [(2, 1), (4, 1), (4, 2)])
def test_aligned_matches_reference(pair, grid, shift):
    a, b = pair
    a, b = a[:16, :16], b[:16, :16]
    assert tiled_l2(a, b, grid, shift) == pytest.approx(reference_aligned_tiled_l2(a, b, grid, shift), rel=1e-9)


def test_shift_forgives_small_displacement_not_changes():
    """A square moved by one pixel is a near-copy with shift=1 (and not with shift=0); the same
    square recoloured stays far at every alignment.  shift=0 is Carlini's distance."""
    base = np.full((32, 32, 3), 0.9)
    a = base.copy()
    a[8:16, 8:16] = (1.0, 0.0, 0.0)
    moved = base.copy()
    moved[9:17, 9:17] = (1.0, 0.0, 0.0)
    recoloured = base.copy()
    recoloured[8:16, 8:16] = (0.0, 0.0, 1.0)
    assert tiled_l2(a, moved, 4, 0) > 0.3
    assert tiled_l2(a, moved, 4, 1) == pytest.approx(0.0, abs=1e-12)
    assert tiled_l2(a, recoloured, 4, 1) > 0.5
    rng = np.random.default_rng(3)
    x, y = rng.random((2, 32, 32, 3))
    assert tiled_l2(x, y, 4, 1) <= tiled_l2(x, y, 4, 0)  # more alignments can only lower the distance
    batched = tiled_l2(np.stack([a, x]), np.stack([moved, y]), 4, 1)
    np.testing.assert_allclose(batched, [tiled_l2(a, moved, 4, 1), tiled_l2(x, y, 4, 1)], rtol=0, atol=0)
    with pytest.raises(UserError, match="shift must be"):
        tiled_l2(a, moved, 4, -1)
