"""Render a ``SceneSpec`` to a small RGB image, and the stock-photo watermark.

Scenes are drawn with Pillow's ImageDraw at ``SUPERSAMPLE`` times the target
resolution and reduced with a BOX filter (area average).  Area averaging mixes
each edge pixel linearly between the shape colour and the neutral background,
so edges are smooth but every pixel keeps the hue of the shape it touches:
the detector relies on this.  (LANCZOS would ring and shift hues.)

Every shape fills a square bounding box of side ``SIZES[size] * size``:
circle = inscribed disc, square = the box, triangle = isosceles with the box's
bottom edge as base and apex at top centre, star = upright regular five-point
star as wide as the box, centred in it.  Nothing is rotated and nothing is
random here, so the same spec gives byte-identical pixels.

The watermark is a made-up stock brand, "PIXSTOCK": a translucent grey
rounded band across the middle with the brand name knocked out in
translucent white, and a translucent grey diagonal stripe corner to corner.
It is neutral grey, so it changes lightness and saturation but never hue.
"""

from __future__ import annotations

import math
from functools import lru_cache

import numpy as np
from PIL import Image, ImageDraw

from bench.world.spec import ObjectSpec, SceneSpec
from bench.world.vocab import COLOURS, SIZES

SUPERSAMPLE = 4
DEFAULT_SIZE = 64

WATERMARK_BRAND = "PIXSTOCK"
#: Overlay colours (RGBA).  One layer, so where band, stripe and letters meet
#: the alphas replace each other instead of stacking: a shape under the mark
#: keeps at least half of its saturation.
WATERMARK_BAND_RGBA = (140, 140, 140, 90)      # ~35% opacity
WATERMARK_TEXT_RGBA = (255, 255, 255, 128)     # ~50% opacity
WATERMARK_BAND_BOX = (0.05, 0.41, 0.95, 0.59)  # x0, y0, x1, y1 (fractions)

_STAR_INNER_RATIO = 0.381966  # regular pentagram: inner / outer radius

# A 3x5 pixel font with just the brand's letters: drawing text ourselves keeps
# the watermark independent of the installed fonts and FreeType version.
_GLYPHS = {
    "P": ("###", "#.#", "###", "#..", "#.."),
    "I": ("###", ".#.", ".#.", ".#.", "###"),
    "X": ("#.#", "#.#", ".#.", "#.#", "#.#"),
    "S": ("###", "#..", "###", "..#", "###"),
    "T": ("###", ".#.", ".#.", ".#.", ".#."),
    "O": ("###", "#.#", "#.#", "#.#", "###"),
    "C": ("###", "#..", "#..", "#..", "###"),
    "K": ("#.#", "#.#", "##.", "#.#", "#.#"),
}


def background_array(name: str, side: int) -> np.ndarray:
    """The neutral background ``name`` as a (side, side, 3) uint8 array."""
    if name == "white":
        return np.full((side, side, 3), 255, np.uint8)
    if name == "light_grey":
        return np.full((side, side, 3), 228, np.uint8)
    if name == "gradient":
        # Two tones, top (250) to bottom (205), vertical and neutral.
        col = np.rint(np.linspace(250.0, 205.0, side)).astype(np.uint8)
        return np.repeat(np.repeat(col[:, None, None], side, axis=1), 3, axis=2)
    raise ValueError(f"unknown background {name!r}")


def shape_polygon(shape: str, cx: float, cy: float, d: float) -> list[tuple[float, float]]:
    """Vertices of a triangle or star filling the d x d box centred at (cx, cy)."""
    if shape == "triangle":
        return [(cx, cy - d / 2), (cx + d / 2, cy + d / 2), (cx - d / 2, cy + d / 2)]
    if shape == "star":
        outer = d / (2 * math.sin(math.radians(72)))  # star width == d
        height = outer * (1 + math.cos(math.radians(36)))
        sy = cy - height / 2 + outer  # star centre, so its box is centred on cy
        pts = []
        for k in range(10):
            r = outer if k % 2 == 0 else outer * _STAR_INNER_RATIO
            a = math.radians(-90 + 36 * k)
            pts.append((cx + r * math.cos(a), sy + r * math.sin(a)))
        return pts
    raise ValueError(f"{shape!r} is not drawn as a polygon")


def draw_object(draw: ImageDraw.ImageDraw, obj: ObjectSpec, side: int) -> None:
    """Draw one object onto a canvas of ``side`` pixels (already supersampled)."""
    d = SIZES[obj.size] * side
    cx, cy = obj.x * side, obj.y * side
    fill = COLOURS[obj.colour]
    # Pillow's boxes include their last pixel, hence the "- 1".
    x0, y0, x1, y1 = cx - d / 2, cy - d / 2, cx + d / 2 - 1, cy + d / 2 - 1
    if obj.shape == "circle":
        draw.ellipse([x0, y0, x1, y1], fill=fill)
    elif obj.shape == "square":
        draw.rectangle([round(x0), round(y0), round(x1), round(y1)], fill=fill)
    else:
        draw.polygon(shape_polygon(obj.shape, cx, cy, d), fill=fill)


@lru_cache(maxsize=8)
def watermark_overlay(side: int) -> Image.Image:
    """The RGBA watermark layer for a canvas of ``side`` pixels (cached)."""
    layer = Image.new("RGBA", (side, side), (0, 0, 0, 0))
    draw = ImageDraw.Draw(layer)
    bx0, by0, bx1, by1 = (v * side for v in WATERMARK_BAND_BOX)
    stripe = max(1, round(0.02 * side))
    draw.line([(0, side - 1), (side - 1, 0)], fill=WATERMARK_BAND_RGBA, width=stripe)
    draw.rounded_rectangle([bx0, by0, bx1, by1], radius=0.05 * side, fill=WATERMARK_BAND_RGBA)
    # Brand name: 3-unit glyphs with 1-unit spacing, centred in the band.
    unit = 0.026 * side
    n = len(WATERMARK_BRAND)
    text_w, text_h = (4 * n - 1) * unit, 5 * unit
    tx0, ty0 = side / 2 - text_w / 2, side / 2 - text_h / 2
    for i, ch in enumerate(WATERMARK_BRAND):
        for r, row in enumerate(_GLYPHS[ch]):
            for c, on in enumerate(row):
                if on == "#":
                    x = tx0 + (4 * i + c) * unit
                    y = ty0 + r * unit
                    draw.rectangle([round(x), round(y), round(x + unit) - 1, round(y + unit) - 1],
                                   fill=WATERMARK_TEXT_RGBA)
    return layer


def _composite_watermark(canvas: Image.Image) -> Image.Image:
    overlay = watermark_overlay(canvas.width)
    return Image.alpha_composite(canvas.convert("RGBA"), overlay).convert("RGB")


def add_watermark(image: Image.Image) -> Image.Image:
    """Return a copy of any RGB image with the PIXSTOCK watermark on it.

    The mark is composited at ``SUPERSAMPLE`` times the resolution (the image
    is upsampled with NEAREST first) and reduced with BOX, like ``render``.
    Square images give exactly the mark ``render`` draws; others are stretched.
    """
    w, h = image.size
    side = max(w, h) * SUPERSAMPLE
    big = image.convert("RGB").resize((side, side), Image.NEAREST)
    return _composite_watermark(big).resize((w, h), Image.BOX)


def render(spec: SceneSpec, size: int = DEFAULT_SIZE) -> Image.Image:
    """Render ``spec`` as a ``size`` x ``size`` RGB image (deterministic)."""
    if size < 16:
        raise ValueError(f"size={size} is too small to draw shapes; use 16 or more")
    side = size * SUPERSAMPLE
    canvas = Image.fromarray(background_array(spec.background, side), "RGB")
    draw = ImageDraw.Draw(canvas)
    for obj in spec.objects:
        draw_object(draw, obj, side)
    if spec.watermark:
        canvas = _composite_watermark(canvas)
    return canvas.resize((size, size), Image.BOX)
