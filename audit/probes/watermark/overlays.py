"""Synthetic visible watermarks: the training positives of the visible-watermark probe.

A watermark here is what stock-photo sites and image hosts stamp on their
pictures: a made-up brand name, a simple logo, a translucent band with a name
in it, or a name tiled across the image, at varied opacity, size, position and
angle.  ``random_overlay(rng)`` draws one recipe, ``apply_overlay(image, o)``
composites it.  The same seed gives the same recipe and the same pixels.

The probe must detect watermarks it has never seen (the shapes world's
PIXSTOCK mark is held out on purpose), so the recipe is a *family* of styles,
not one mark, and brand names are random syllables (never "PIXSTOCK").

Text is drawn with Pillow's built-in bitmap font (``ImageFont.load_default_imagefont``),
which ships inside Pillow: the pixels do not depend on the fonts installed on
the machine or on the FreeType version.  Glyph masks are drawn at the font's
native 11 px and scaled to the wanted size, so marks stay smooth at any
image resolution.

Compositing is plain alpha blending, ``out = (1 - a*m) * image + a*m * colour``
with mask ``m`` in [0, 1] and opacity ``a``: one line of numpy, so it is
written here rather than going through RGBA layers.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from functools import lru_cache

import numpy as np
from PIL import Image, ImageDraw, ImageFont

#: Bumped whenever the recipe changes what pixels a seed gives; part of the probe cache key.
RECIPE_VERSION = 1

KINDS = ("text", "band", "tiled", "logo", "logo_text")
LOGOS = ("ring", "disc", "square_frame", "triangle", "star", "copyright")
#: Neutral grey levels of the mark; white and light grey dominate real watermarks.
LEVELS = (255, 255, 230, 190, 128, 60, 0)
#: Minimum difference in grey level between the mark and what lies under it:
#: a white mark on a white background changes nothing and would be a false label.
MIN_CONTRAST = 60.0

_SYLLABLES = ("pix", "foto", "snap", "lum", "vista", "kor", "ima", "gen", "nova", "stud",
              "shot", "arc", "zen", "mira", "dex", "pho", "ray", "tek", "lux", "vio")
_SUFFIXES = ("", "", "", "stock", "pics", "photo", "images", ".com", " ©", "media")
_EXCLUDED_BRANDS = frozenset({"PIXSTOCK"})  # the shapes world's held-out mark


@dataclass(frozen=True)
class Overlay:
    """One watermark recipe.  Sizes and positions are fractions of the image side.

    ``kind``     text | band | tiled | logo | logo_text
    ``text``     brand name ("" for a bare logo)
    ``logo``     logo shape ("" for text-only kinds)
    ``opacity``  alpha of the mark, 0..1
    ``scale``    width of the mark (text, logo: its box; band: the band's height)
    ``x, y``     centre of the mark
    ``angle``    rotation in degrees (counter-clockwise)
    ``level``    grey level of the mark (0 black .. 255 white)
    """

    kind: str
    text: str
    logo: str
    opacity: float
    scale: float
    x: float
    y: float
    angle: float
    level: int

    def to_dict(self) -> dict:
        return asdict(self)


def brand_name(rng: np.random.Generator) -> str:
    """A made-up brand: two or three syllables and maybe a suffix, in upper or mixed case."""
    while True:
        n = int(rng.integers(2, 4))
        name = "".join(_SYLLABLES[int(rng.integers(len(_SYLLABLES)))] for _ in range(n))
        name += _SUFFIXES[int(rng.integers(len(_SUFFIXES)))]
        name = name.upper() if rng.random() < 0.6 else name.capitalize()
        if name.upper() not in _EXCLUDED_BRANDS:
            return name


def random_overlay(rng: np.random.Generator) -> Overlay:
    """Draw one watermark recipe from the family (see module docstring)."""
    kind = KINDS[int(rng.integers(len(KINDS)))]
    text = brand_name(rng) if kind != "logo" else ""
    logo = LOGOS[int(rng.integers(len(LOGOS)))] if kind in ("logo", "logo_text") else ""
    opacity = float(rng.uniform(0.25, 0.8))
    if kind == "band":
        scale = float(rng.uniform(0.12, 0.3))     # band height
        x, y = 0.5, float(rng.uniform(0.2, 0.8))
        angle = 0.0 if rng.random() < 0.7 else float(rng.uniform(-40, 40))
    elif kind == "tiled":
        scale = float(rng.uniform(0.25, 0.45))    # width of one tile's text
        x, y = float(rng.uniform(0, 1)), float(rng.uniform(0, 1))  # tiling offset
        angle = float(rng.uniform(-45, 45))
    else:
        scale = float(rng.uniform(0.3, 0.9)) if kind != "logo" else float(rng.uniform(0.2, 0.6))
        half = scale / 2
        x = float(rng.uniform(min(half, 0.5), max(1 - half, 0.5)))
        y = float(rng.uniform(0.15, 0.85))
        # logo_text is always upright (its two parts are placed side by side).
        angle = 0.0 if kind == "logo_text" or rng.random() < 0.6 else float(rng.uniform(-45, 45))
    level = int(LEVELS[int(rng.integers(len(LEVELS)))])
    return Overlay(kind, text, logo, round(opacity, 4), round(scale, 4), round(x, 4), round(y, 4),
                   round(angle, 2), level)


# --------------------------------------------------------------------------- masks

@lru_cache(maxsize=1)
def _font() -> ImageFont.ImageFont:
    return ImageFont.load_default_imagefont()


def _text_mask(text: str) -> Image.Image:
    """The text at the bitmap font's native size, as an "L" mask (255 = ink)."""
    font = _font()
    x0, y0, x1, y1 = font.getbbox(text)
    mask = Image.new("L", (max(1, x1 - x0) + 2, max(1, y1 - y0) + 2), 0)
    ImageDraw.Draw(mask).text((1 - x0, 1 - y0), text, fill=255, font=font)
    return mask


def _logo_mask(logo: str, side: int = 64) -> Image.Image:
    """A simple logo shape on a ``side`` x ``side`` "L" mask."""
    mask = Image.new("L", (side, side), 0)
    draw = ImageDraw.Draw(mask)
    m, w = side * 0.06, max(2, side // 10)
    box = [m, m, side - 1 - m, side - 1 - m]
    if logo == "ring":
        draw.ellipse(box, outline=255, width=w)
    elif logo == "disc":
        draw.ellipse(box, fill=255)
    elif logo == "square_frame":
        draw.rounded_rectangle(box, radius=side * 0.15, outline=255, width=w)
    elif logo == "triangle":
        draw.polygon([(side / 2, m), (side - 1 - m, side - 1 - m), (m, side - 1 - m)], fill=255)
    elif logo == "star":
        c, r_out = side / 2, side / 2 - m
        pts = [(c + (r_out if k % 2 == 0 else 0.4 * r_out) * math.cos(math.radians(-90 + 36 * k)),
                c + (r_out if k % 2 == 0 else 0.4 * r_out) * math.sin(math.radians(-90 + 36 * k)))
               for k in range(10)]
        draw.polygon(pts, fill=255)
    elif logo == "copyright":
        draw.ellipse(box, outline=255, width=w)
        inner = [side * 0.3, side * 0.3, side * 0.7, side * 0.7]
        draw.arc(inner, start=45, end=315, fill=255, width=w)
    else:
        raise ValueError(f"unknown logo {logo!r}: use one of {', '.join(LOGOS)}")
    return mask


def _scaled(mask: Image.Image, width: float) -> Image.Image:
    """``mask`` resized to ``width`` pixels wide (aspect kept); BOX when shrinking, BILINEAR when growing."""
    w = max(2, int(round(width)))
    h = max(2, int(round(mask.height * w / mask.width)))
    return mask.resize((w, h), Image.BOX if w < mask.width else Image.BILINEAR)


def _paste(canvas: np.ndarray, mask: Image.Image, cx: float, cy: float, angle: float) -> None:
    """Add ``mask`` (rotated) centred at (cx, cy) into the float ``canvas``, clipped at 1."""
    if angle:
        mask = mask.rotate(angle, resample=Image.BILINEAR, expand=True)
    m = np.asarray(mask, dtype=np.float32) / 255.0
    h, w = canvas.shape
    top, left = int(round(cy - m.shape[0] / 2)), int(round(cx - m.shape[1] / 2))
    y0, x0 = max(0, top), max(0, left)
    y1, x1 = min(h, top + m.shape[0]), min(w, left + m.shape[1])
    if y1 > y0 and x1 > x0:
        region = canvas[y0:y1, x0:x1]
        np.maximum(region, m[y0 - top:y1 - top, x0 - left:x1 - left], out=region)


def overlay_mask(overlay: Overlay, width: int, height: int) -> np.ndarray:
    """The mark's coverage on a ``width`` x ``height`` image: float32 [H, W] in 0..1."""
    side = min(width, height)
    canvas = np.zeros((height, width), np.float32)
    cx, cy = overlay.x * width, overlay.y * height
    kind = overlay.kind
    if kind == "text":
        _paste(canvas, _scaled(_text_mask(overlay.text), overlay.scale * side), cx, cy, overlay.angle)
    elif kind == "logo":
        _paste(canvas, _scaled(_logo_mask(overlay.logo), overlay.scale * side), cx, cy, overlay.angle)
    elif kind == "logo_text":
        logo_w = overlay.scale * side * 0.3
        _paste(canvas, _scaled(_logo_mask(overlay.logo), logo_w), cx - overlay.scale * side * 0.35, cy, 0.0)
        _paste(canvas, _scaled(_text_mask(overlay.text), overlay.scale * side * 0.65),
               cx + overlay.scale * side * 0.18, cy, 0.0)
    elif kind == "band":
        band_h = overlay.scale * height
        band = Image.new("L", (int(width * 1.5), max(2, int(round(band_h)))), 0)
        ImageDraw.Draw(band).rectangle([0, 0, band.width, band.height], fill=150)
        text = _scaled(_text_mask(overlay.text), min(0.8 * width, band.height / 11 * 6 * len(overlay.text)))
        # The name is drawn at full strength inside the half-strength band.
        band.paste(255, ((band.width - text.width) // 2, (band.height - text.height) // 2), text)
        _paste(canvas, band, cx, cy, overlay.angle)
    elif kind == "tiled":
        tile = _scaled(_text_mask(overlay.text), overlay.scale * side)
        step_x, step_y = tile.width * 1.5, max(tile.height * 3.0, 1.0)
        # Rotated once; the grid of tile centres is rotated with it.
        rotated = tile.rotate(overlay.angle, resample=Image.BILINEAR, expand=True) if overlay.angle else tile
        cos, sin = math.cos(math.radians(overlay.angle)), math.sin(math.radians(overlay.angle))
        reach = max(width, height)
        for row, gy in enumerate(np.arange(-reach, reach, step_y)):
            shift = (row % 2) * step_x / 2 + overlay.x * step_x
            for gx in np.arange(-reach, reach, step_x):
                u, v = gx + shift, gy + overlay.y * step_y
                # PIL rotates counter-clockwise on screen (y down): x' = u cos + v sin, y' = -u sin + v cos.
                _paste(canvas, rotated, width / 2 + u * cos + v * sin, height / 2 - u * sin + v * cos, 0.0)
    else:
        raise ValueError(f"unknown overlay kind {kind!r}: use one of {', '.join(KINDS)}")
    return canvas


def apply_overlay(image: Image.Image | np.ndarray, overlay: Overlay) -> np.ndarray:
    """Composite ``overlay`` onto an RGB image; returns a new uint8 HWC array.

    The grey level is moved away from what lies under the mark when the two are
    closer than ``MIN_CONTRAST`` (to black or white, whichever is farther), so
    every mark really changes pixels.
    """
    arr = np.asarray(image.convert("RGB") if isinstance(image, Image.Image) else image)
    if arr.dtype != np.uint8 or arr.ndim != 3 or arr.shape[2] != 3:
        raise ValueError(f"expected an HWC uint8 RGB image, got {arr.dtype} {arr.shape}")
    h, w = arr.shape[:2]
    alpha = overlay_mask(overlay, w, h) * overlay.opacity
    img = arr.astype(np.float32)
    level = float(overlay.level)
    covered = alpha > 0.05
    if covered.any():
        under = float(img[covered].mean())
        if abs(under - level) < MIN_CONTRAST:
            level = 0.0 if under > 127.5 else 255.0
    out = img * (1.0 - alpha[..., None]) + level * alpha[..., None]
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


def add_random_watermark(image: Image.Image | np.ndarray, seed: int | tuple[int, ...]) -> tuple[np.ndarray, Overlay]:
    """A random mark from the family, seeded: ``(marked uint8 HWC array, recipe)``.

    Pass ``seed=(run_seed, image_number)`` so that each image's mark does not
    depend on which other images are marked alongside it.
    """
    rng = np.random.default_rng(list(seed) if isinstance(seed, tuple) else seed)
    overlay = random_overlay(rng)
    return apply_overlay(image, overlay), overlay
