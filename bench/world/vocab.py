"""The shapes world's vocabulary: shapes, colours, sizes, relations, backgrounds.

Everything else in ``bench.world`` (renderer, caption grammar, detector, corpus)
reads its words and numbers from here, so a change in one place changes all.

Colours are chosen so that their *hues* are far apart (at least 25 degrees).
Backgrounds and the watermark are neutral grey, and blending a colour with a
neutral grey (anti-aliased edges, a semi-transparent watermark) keeps its hue
exactly: that is why the detector classifies colour by hue and can still read
shapes under the watermark.
"""

from __future__ import annotations

import colorsys

SHAPES: tuple[str, ...] = ("circle", "square", "triangle", "star")

#: name -> sRGB.  Hues: red ~357, orange ~29, yellow ~55, green ~132,
#: blue ~226, purple ~279 degrees; chroma (max-min) >= 150 for all.
COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (215, 35, 40),
    "orange": (240, 125, 15),
    "yellow": (235, 215, 15),
    "green": (20, 170, 50),
    "blue": (35, 80, 225),
    "purple": (145, 45, 200),
}

#: size class -> side of the object's bounding box, as a fraction of the image
#: side (12.8 px and 23 px at 64x64).  Every shape fills a square box of this side.
SIZES: dict[str, float] = {"small": 0.20, "large": 0.36}

#: "A <relation> B", with image y growing downwards ("above" = smaller y).
RELATIONS: tuple[str, ...] = ("left_of", "right_of", "above", "below")
RELATION_PHRASES: dict[str, str] = {
    "left_of": "to the left of",
    "right_of": "to the right of",
    "above": "above",
    "below": "below",
}

#: Neutral backgrounds only (chroma 0), so colour segmentation stays exact.
BACKGROUNDS: tuple[str, ...] = ("white", "light_grey", "gradient")
BACKGROUND_PHRASES: dict[str, str] = {
    "white": "a white background",
    "light_grey": "a light grey background",
    "gradient": "a soft grey gradient background",
}

#: (colour, shape) pairs that never occur in the corpus's train split (neither
#: in a caption nor in an image), for compositional-generalisation prompts.
#: Each colour and each shape appears at most once, so every word is still
#: seen in training, only not in this combination.
HELD_OUT_PAIRS: tuple[tuple[str, str], ...] = (
    ("purple", "star"),
    ("orange", "square"),
    ("green", "triangle"),
    ("yellow", "circle"),
)

COUNT_WORDS: dict[int, str] = {1: "one", 2: "two", 3: "three", 4: "four"}
MAX_COUNT = 4

PLURALS: dict[str, str] = {s: s + "s" for s in SHAPES}


def colour_hue(name: str) -> float:
    """Hue of a palette colour in degrees [0, 360)."""
    r, g, b = (c / 255.0 for c in COLOURS[name])
    return colorsys.rgb_to_hsv(r, g, b)[0] * 360.0


def colour_chroma(name: str) -> int:
    """Chroma (max - min channel) of a palette colour, 0..255."""
    rgb = COLOURS[name]
    return max(rgb) - min(rgb)


# Relations are decided on bounding-box centres (x right, y down, both in [0, 1]).
# ``relation_between`` is the judge's (lenient) rule; the scene sampler places
# related objects with a much larger margin (see ``sample.RELATION_MIN_GAP``),
# so a generated scene is never near the decision boundary.
RELATION_MIN_SEP = 0.08


def relation_between(a_xy: tuple[float, float], b_xy: tuple[float, float],
                     min_sep: float = RELATION_MIN_SEP) -> str | None:
    """The relation "A <rel> B" along the dominant axis, or None if unclear.

    ``a_xy`` and ``b_xy`` are object centres.  The dominant axis is the one with
    the larger centre difference; the difference along it must be at least
    ``min_sep`` (a fraction of the image side).
    """
    dx = b_xy[0] - a_xy[0]
    dy = b_xy[1] - a_xy[1]
    if abs(dx) >= abs(dy):
        if abs(dx) < min_sep:
            return None
        return "left_of" if dx > 0 else "right_of"
    if abs(dy) < min_sep:
        return None
    return "above" if dy > 0 else "below"
