"""Copy distance: Carlini et al.'s tiled L2, the strict check behind a memorization verdict.

Carlini, Hayes, Nasr, Jagielski, Sehwag, Tramer, Balle, Ippolito, Wallace,
"Extracting Training Data from Diffusion Models", USENIX Security 2023:
two images are near-copies when *every* tile of one is close to the
corresponding tile of the other.  With both images resized to ``side`` x
``side`` pixels, scaled to [0, 1] and cut into a ``grid`` x ``grid`` array of
tiles T_1..T_{grid^2} (each t x t pixels x 3 channels, t = side / grid):

    rms_j(a, b)   = || a[T_j] - b[T_j] ||_2 / sqrt(3 t^2)         (per-tile RMS)
    d(a, b)       = max_j rms_j(a, b)                            (the copy distance)

so d = 0 for identical images, d = 1 only for black against white
everywhere, and d is symmetric.  Lower = closer.  The paper uses a 4 x 4 grid
(16 tiles of 128 px on 512 px images); so does ``GRID``.  Taking the max, not
the mean, is the point: a copy must match everywhere, so a shared background
cannot make two different scenes look alike (a plain L2 over the whole image
is dominated by the background).

Why this and not a copy-detection descriptor (SSCD, Pizzi et al. 2022, as in
Somepalli et al. 2023): SSCD needs network weights that cannot be downloaded
here, and the built-in shapes world is pixel-aligned (a memorized image comes
back at the same place on the same canvas), so pixel tiles are meaningful.
For crops, flips or style changes of real photos a descriptor is the better
tool; this module is only the pure numeric core, and the audit records its
``method`` string in every row, so another method can sit beside it.

**Alignment tolerance** (``shift``, our extension; ``shift=0`` is the paper's
distance).  A generator that reproduces a training image rarely puts every
object on the same pixel: the built-in world's loose copies move each object
by about a pixel, and the plain tiled L2 of such a copy is as large as that of
an image with one object reshaped.  So each tile may align on its own within
``shift`` pixels (the second image shifted by (dy, dx), |dy|, |dx| <= shift,
edges repeated):

    d_s(a, b) = max_j min_{|dy|,|dx| <= s} rms_j(a, shift(b, dy, dx))

A changed, missing or recoloured object still changes its tile at every
alignment, while a small displacement no longer counts.  On the calibration
of docs/audit-calibration.md, ``shift=1`` at 32 px (1/32 of the side) raised
the AUROC on the simulated copies from 0.993 to 0.997 and recall at the
chosen threshold from 0.90 to 0.985 at the same precision.  ``d_s`` is not
exactly symmetric (only ``b`` moves); ``d_0`` is.

**Relative criterion** (``relative_distances``).  Carlini et al. (§5.1) also
normalise the distance by how close the generation is to its other look-alikes:

    l(x^, x; S) = d(x^, x) / (alpha * mean_{y in S} d(x^, y)),   alpha = 0.5, n = |S| = 50

with S the n training images closest to the generation x^ (x itself among
them).  It is small only when one training image is much closer than the
rest: a generated red circle that lies within the absolute distance of a
hundred training red circles is a common scene, not a copy of one of them.
A third-party implementation (``carlini_distance``: ``d_1 / (0.5 *
mean(d_1..d_50))``) computes the same, the nearest included.  Our change:
byte-identical training images (the built-in world's 110 copies of each
iconic scene, or a LAION image duplicated by URL) count once in S, since a
duplicated image is one image to copy, not a crowd of look-alikes; without
this a perfect copy of a 110-times duplicated image scores 1 / alpha = 2.
The paper's extraction threshold is not used: the threshold is calibrated on
generations (``docs/audit-calibration.md``).
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
from PIL import Image

from bench.errors import UserError

GRID = 4
#: Comparison side.  32 px makes one pixel 1/32 = 0.031 of the image side, the
#: built-in world's position tolerance for "the same scene" (0.03 in
#: ``bench.world.compare_scenes``): a shift within tolerance moves edges by
#: about a pixel, a moved, missing or recoloured object changes whole tiles.
#: The choice matters little in the calibration (docs/audit-calibration.md
#: lists the AUROC at 16, 32 and 64 px: within 0.003 of each other).
SIDE = 32
#: Per-tile alignment tolerance in pixels at ``SIDE`` (see the module docstring).
SHIFT = 1
#: Carlini et al. 2023, §5.1: S is the n = 50 nearest training images, and the mean is scaled by alpha = 0.5.
RELATIVE_N = 50
RELATIVE_ALPHA = 0.5


def method_name(grid: int = GRID, side: int = SIDE, shift: int = SHIFT) -> str:
    """The method string recorded with every distance (settings that change the number)."""
    return f"carlini-tiled-l2:grid={grid}:side={side}:shift={shift}"


def to_unit_array(image: Image.Image | np.ndarray, side: int = SIDE) -> np.ndarray:
    """An image as float32 [side, side, 3] in [0, 1].

    Non-square images are stretched to the square (the tiles then follow the
    image's own grid).  Shrinking uses BOX (area average: antialiased, and
    exact for whole-factor reductions, so a 512 px image and its 64 px
    reduction compare as close as they look); enlarging uses BICUBIC.
    """
    if isinstance(image, np.ndarray):
        arr = image
        if arr.ndim == 2:
            arr = np.repeat(arr[:, :, None], 3, axis=2)
        if arr.ndim != 3 or arr.shape[2] not in (3, 4):
            raise UserError(f"expected an HWC RGB image array, got shape {arr.shape}; pass uint8 [H, W, 3]")
        if arr.dtype != np.uint8:
            raise UserError(f"expected a uint8 image array, got {arr.dtype}; convert to 8-bit RGB first")
        image = Image.fromarray(arr[:, :, :3], "RGB")
    image = image.convert("RGB")
    if image.size != (side, side):
        shrink = image.width >= side and image.height >= side
        image = image.resize((side, side), Image.BOX if shrink else Image.BICUBIC)
    return np.asarray(image, dtype=np.float32) / 255.0


def tile_rms(a: np.ndarray, b: np.ndarray, grid: int = GRID) -> np.ndarray:
    """Per-tile RMS differences of unit-range images: [N, grid, grid] for
    batches a, b of shape [N, side, side, C] (or [grid, grid] for one image)."""
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    if a.shape != b.shape:
        raise UserError(f"images to compare have different shapes {a.shape} and {b.shape}; resize both to one side")
    single = a.ndim == 3
    if single:
        a, b = a[None], b[None]
    n, h, w, c = a.shape
    if h != w or h % grid:
        raise UserError(f"tiled L2 needs square images whose side is a multiple of grid={grid}, got {h}x{w}")
    t = h // grid
    sq = (a - b) ** 2
    # [N, row tile, row in tile, col tile, col in tile, C]: mean over the pixels of each tile.
    per_tile = np.sqrt(sq.reshape(n, grid, t, grid, t, c).mean(axis=(2, 4, 5)))
    return per_tile[0] if single else per_tile


def aligned_tile_rms(a: np.ndarray, b: np.ndarray, grid: int = GRID, shift: int = 0) -> np.ndarray:
    """Per-tile RMS with each tile's best alignment of ``b`` within ``shift`` pixels (edge-padded)."""
    if shift < 0:
        raise UserError(f"shift must be >= 0 pixels, got {shift}")
    if shift == 0:
        return tile_rms(a, b, grid)
    b = np.asarray(b)
    if np.shape(a) != b.shape:
        raise UserError(f"images to compare have different shapes {np.shape(a)} and {b.shape}; resize both to one side")
    spatial = ((shift, shift), (shift, shift), (0, 0))
    padded = np.pad(b, spatial if b.ndim == 3 else ((0, 0),) + spatial, mode="edge")
    h, w = b.shape[-3], b.shape[-2]
    best = None
    for dy in range(-shift, shift + 1):
        for dx in range(-shift, shift + 1):
            moved = padded[..., shift + dy:shift + dy + h, shift + dx:shift + dx + w, :]
            rms = tile_rms(a, moved, grid)
            best = rms if best is None else np.minimum(best, rms)
    return best


def tiled_l2(a: np.ndarray, b: np.ndarray, grid: int = GRID, shift: int = 0) -> np.ndarray | float:
    """Copy distance max_j rms_j(a, b) of unit-range images (batched: one value per pair);
    with ``shift`` > 0 each tile takes its best alignment within that many pixels."""
    per_tile = aligned_tile_rms(a, b, grid, shift)
    if per_tile.ndim == 2:
        return float(per_tile.max())
    return per_tile.reshape(per_tile.shape[0], -1).max(axis=1)


def copy_distance(image_a, image_b, side: int = SIDE, grid: int = GRID, shift: int = SHIFT) -> float:
    """Tiled-L2 copy distance of two images (PIL or uint8 HWC), each resized to ``side``."""
    return float(tiled_l2(to_unit_array(image_a, side), to_unit_array(image_b, side), grid, shift))


def copy_distances(images_a: Sequence, images_b: Sequence, side: int = SIDE, grid: int = GRID,
                   shift: int = SHIFT) -> np.ndarray:
    """Pairwise-aligned distances: one per (images_a[i], images_b[i])."""
    if len(images_a) != len(images_b):
        raise UserError(f"got {len(images_a)} and {len(images_b)} images; pass one partner per image")
    if not len(images_a):
        return np.zeros(0, dtype=np.float64)
    a = np.stack([to_unit_array(x, side) for x in images_a])
    b = np.stack([to_unit_array(x, side) for x in images_b])
    return tiled_l2(a, b, grid, shift)


def relative_distances(distances: np.ndarray, groups: Sequence | None = None, n: int = RELATIVE_N,
                       alpha: float = RELATIVE_ALPHA) -> np.ndarray:
    """Carlini's relative distance of one generation to each of its candidates (see the module docstring):
    ``distances[i] / (alpha * mean of the n smallest distances over distinct candidates)``.

    ``groups`` labels duplicates (equal labels = the same image; each group counts once, at its smallest
    distance); ``None`` treats every candidate as distinct.  NaN distances (a candidate that could not be
    loaded) are left out of S and stay NaN.  With fewer than two distinct candidates there is nothing to
    compare against and every value is NaN.
    """
    d = np.asarray(distances, dtype=np.float64)
    if n < 1 or not (alpha > 0):
        raise UserError(f"relative distance needs n >= 1 and alpha > 0, got n={n}, alpha={alpha}")
    # object dtype: fixed-width byte strings would drop a fingerprint's trailing zero bytes
    labels = np.arange(len(d)) if groups is None else np.asarray(groups, dtype=object)
    if len(labels) != len(d):
        raise UserError(f"got {len(d)} distances and {len(labels)} group labels; pass one label per candidate")
    best: dict = {}
    for label, value in zip(labels.tolist(), d.tolist()):
        if not np.isnan(value) and (label not in best or value < best[label]):
            best[label] = value
    if len(best) < 2:
        return np.full(len(d), np.nan)
    nearest = np.sort(np.fromiter(best.values(), dtype=np.float64))[:n]
    scale = alpha * nearest.mean()
    if scale == 0:  # every look-alike is identical to the generation: no one image stands out
        return np.where(np.isnan(d), np.nan, np.where(d == 0, 1.0 / alpha, np.inf))
    return d / scale
