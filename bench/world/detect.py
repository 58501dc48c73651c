"""The exact detector: read a scene spec back from an image, and judge prompts.

``detect(image)`` works on any RGB image (PIL or array) of the shapes world:

1. *Colour pixels.*  Backgrounds and the watermark are neutral grey, so a
   pixel belongs to an object when its chroma (max - min channel) is at least
   ``MIN_CHROMA``.  Blending a colour with grey keeps its hue, so each
   component's colour is the palette colour nearest in hue (chroma-weighted
   vote over its pixels); this also works under the watermark.
2. *Components.*  ``scipy.ndimage.label`` (8-connectivity) on the colour
   pixels; components smaller than ``MIN_AREA_FRAC`` of the image are noise,
   and so are components that are not one flat colour: neither 80% of their
   chroma votes for one palette colour nor their hues are concentrated
   (``MIN_HUE_PURITY``, ``MIN_HUE_CONCENTRATION``; the second keeps a
   generator's objects whose hue drifts across a palette border, see
   docs/detector-on-generations.md).
3. *Coverage.*  Knowing the colour, a pixel's coverage is its chroma divided
   by the palette colour's chroma (exact for anti-aliased edges on the
   backgrounds).  The object's mask is coverage >= ``MASK_COVERAGE`` with
   holes filled (so the watermark's letters, which halve chroma, do not cut
   holes).
4. *Geometry.*  Solidity (mask area / convex hull area) tells the star
   (~0.5-0.63 at 64 px) from the convex shapes (>= 0.83).  Among those, all
   shapes filling a square box, the fill ratio area / (box width * box
   height) separates square (~1.0), circle (~0.79) and triangle (~0.5-0.6);
   thresholds in ``_classify_shape``, margins measured on thousands of
   renders, watermarked ones included.  The box side gives the size class
   (split halfway between the nominal sides), the box centre the position.

``check(prompt_spec, image)`` is the GenEval-style judge for the ``shapes``
prompt set.  A *prompt spec* (JSON) says what the prompt asks for, and may be
partial::

    {"objects": [{"shape": "circle", "colour": "red", "count": 1, "size": null},
                 {"shape": "star",   "colour": "green", "count": 1, "size": "small"}],
     "relation": {"type": "left_of", "a": 0, "b": 1}}

* ``objects``: one entry per *group*; ``shape``/``colour``/``size`` may be
  null (= any), ``count`` (default 1) is the exact number of detected objects
  that must match all of the group's non-null fields.
* ``relation``: null, or "some object of group ``a`` is ``type`` of some
  object of group ``b``", ``type`` in RELATIONS, decided on box centres by
  ``vocab.relation_between`` (dominant axis, >= 0.08 of the image apart).
* ``background``: optional, null or a BACKGROUNDS name; not judged, only
  used by ``sample.scene_for_prompt_spec`` to draw a matching scene.
* Objects the prompt does not mention are allowed (as in GenEval).

``check`` returns per-field verdicts (True/False, or None when the prompt does
not constrain that field) and ``correct`` = all constrained fields true:

* ``shape``: every group with a shape has at least one object of that shape;
* ``colour``: every group with a colour has an object of that shape and colour;
* ``size``: every group with a size has an object matching shape, colour, size;
* ``count``: every group matches exactly ``count`` objects;
* ``relation``: the relation holds for some pair.

Watermarked images: the watermark is reported by ``detect_watermark`` (and
``detect(...).watermark``), and objects under it are still read: measured
field recovery is the same as on clean renders (all fields 100% on 90
scenes); tests/world/test_detect.py asserts >= 95% there and >= 99% clean.

Scope: upright, unrotated shapes of the palette on neutral backgrounds, as
``render`` draws them; checked at 48-256 px and with Gaussian pixel noise up
to sigma 6 (at sigma 10 about 5% of fields are lost).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from PIL import Image
from scipy import ndimage

from bench.errors import UserError
from bench.world.spec import ObjectSpec, SceneSpec
from bench.world.vocab import (BACKGROUNDS, COLOURS, MAX_COUNT, RELATIONS, SHAPES, SIZES,
                               colour_chroma, colour_hue, relation_between)

MIN_CHROMA = 24.0        # below this a pixel is background / watermark / faint edge
MIN_AREA_FRAC = 0.0015   # ~6 px at 64x64; smaller components are noise
#: A shape is one flat colour; a component is kept when either of the two gates below says so.
#: Measured by scripts/validate_detector.py (docs/detector-on-generations.md) and on noise
#: (tests/world/test_world_detect.py): components that pass every other gate in 2,700 Gaussian
#: pixel-noise images (sigma 8-60 on grey 128, white and light grey) and 300 uniform-noise images:
#: purity <= 0.48 and concentration <= 0.46; clean renders: both 1.000 (763 objects, 300 scenes).
#: Palette purity: share of the component's chroma that votes for its palette colour.  0.8 is the
#: original gate; it drops shapes-ldm objects whose hue drifts across the border of two
#: neighbouring palette colours (81 of the 728 components of its 344 ``shapes`` generations at
#: guidance 7.5 are below 0.8, most split red/orange, orange/yellow or blue/purple).
MIN_HUE_PURITY = 0.8
#: Hue concentration: chroma-weighted mean resultant length of the component's hues
#: (``_hue_concentration``; 1 = one hue; two hues d degrees apart, half and half, give cos(d/2)),
#: which does not care where the palette borders lie.  On the same 728 components: 5th
#: percentile 0.94; 700 reach 0.9.  0.9 keeps two hues up to 52 degrees apart in equal parts
#: (or hues spread evenly over 90 degrees): orange drifting into yellow, blue into purple.  So two
#: touching objects of neighbouring colours in equal parts (red and orange, 31 degrees apart;
#: orange and yellow, 25) now pass as one object; all other pairs (blue and purple, 53: 0.895) stay apart.
MIN_HUE_CONCENTRATION = 0.9
MAX_SIDE_FRAC = 0.6  # a box side above this share of the image is no shape of this world
MASK_COVERAGE = 0.3      # coverage threshold for an object's mask
#: Size classes split halfway between the nominal box sides (0.20 and 0.36).
SIZE_SPLIT = (SIZES["small"] + SIZES["large"]) / 2
WATERMARK_THRESHOLD = 0.01

_COLOUR_NAMES = tuple(COLOURS)
_PALETTE_HUES = np.array([colour_hue(c) for c in _COLOUR_NAMES])
_PALETTE_CHROMA = np.array([colour_chroma(c) for c in _COLOUR_NAMES], dtype=np.float64)


@dataclass(frozen=True)
class DetectedObject:
    """One detected object with the measurements behind its labels."""

    shape: str
    colour: str
    size: str
    x: float
    y: float
    width: float    # box side fractions
    height: float
    fill: float     # mask area / box area
    solidity: float  # mask area / convex hull area
    area: float     # mask area, fraction of the image

    def to_spec(self) -> ObjectSpec:
        return ObjectSpec(self.shape, self.colour, self.size,
                          round(min(max(self.x, 0.0), 1.0), 4),
                          round(min(max(self.y, 0.0), 1.0), 4))


def to_array(image: Image.Image | np.ndarray) -> np.ndarray:
    """An (H, W, 3) float64 array in 0..255 from a PIL image or array.

    Arrays may be uint8 (0..255) or float (0..1 if their max is <= 1)."""
    if isinstance(image, Image.Image):
        return np.asarray(image.convert("RGB"), dtype=np.float64)
    raw = np.asarray(image)
    if raw.ndim == 2:
        raw = np.repeat(raw[:, :, None], 3, axis=2)
    if raw.ndim != 3 or raw.shape[2] not in (3, 4):
        raise UserError(f"expected an HxWx3 image array, got shape {raw.shape}")
    arr = raw[:, :, :3].astype(np.float64)
    if raw.dtype.kind == "f" and arr.max(initial=0.0) <= 1.0:
        arr *= 255.0
    return arr


def _hue_and_chroma(arr: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    r, g, b = arr[..., 0], arr[..., 1], arr[..., 2]
    mx, mn = arr.max(axis=2), arr.min(axis=2)
    chroma = mx - mn
    safe = np.where(chroma > 0, chroma, 1.0)
    hue = np.where(mx == r, ((g - b) / safe) % 6.0,
                   np.where(mx == g, (b - r) / safe + 2.0, (r - g) / safe + 4.0)) * 60.0
    return hue % 360.0, chroma


def _nearest_palette(hue: np.ndarray) -> np.ndarray:
    diff = np.abs(hue[..., None] - _PALETTE_HUES)
    diff = np.minimum(diff, 360.0 - diff)
    return diff.argmin(axis=-1)


def _hue_concentration(hue: np.ndarray, weight: np.ndarray) -> float:
    """Weighted mean resultant length of hues in degrees: 1 when all are equal,
    near 0 for hues spread round the circle (two hues d degrees apart, half and
    half, give cos(d/2))."""
    angle = np.deg2rad(hue)
    total = float(weight.sum())
    return float(np.hypot((weight * np.cos(angle)).sum(), (weight * np.sin(angle)).sum()) / total) if total else 0.0


def _hull_area(mask: np.ndarray) -> float:
    """Area of the convex hull of a binary mask's pixel squares."""
    # Only the outer corners of each row's leftmost and rightmost pixels can
    # be hull vertices; Andrew's monotone chain on those.
    pts = set()
    for r in np.flatnonzero(mask.any(axis=1)):
        cs = np.flatnonzero(mask[r])
        c0, c1 = int(cs[0]), int(cs[-1]) + 1
        pts.update(((c0, r), (c1, r), (c0, r + 1), (c1, r + 1)))
    pts = sorted(pts)

    def cross(o, a, b):
        return (a[0] - o[0]) * (b[1] - o[1]) - (a[1] - o[1]) * (b[0] - o[0])

    def half(points):
        chain: list[tuple[int, int]] = []
        for p in points:
            while len(chain) >= 2 and cross(chain[-2], chain[-1], p) <= 0:
                chain.pop()
            chain.append(p)
        return chain[:-1]

    hull = np.array(half(pts) + half(reversed(pts)), dtype=np.float64)
    x, y = hull[:, 0], hull[:, 1]
    return 0.5 * abs(float(np.dot(x, np.roll(y, 1)) - np.dot(y, np.roll(x, 1))))


#: Measured at 64 px over ~3000 objects (clean and watermarked): solidity
#: star <= 0.63, others >= 0.83; fill circle <= 0.86, square >= 0.91,
#: triangle <= 0.62, circle >= 0.72.
SOLIDITY_SPLIT = 0.73
FILL_SQUARE = 0.885
FILL_CIRCLE = 0.67


def _classify_shape(fill: float, solidity: float) -> str:
    if solidity < SOLIDITY_SPLIT:
        return "star"
    if fill >= FILL_SQUARE:
        return "square"
    if fill >= FILL_CIRCLE:
        return "circle"
    return "triangle"


def detect_objects(image: Image.Image | np.ndarray) -> list[DetectedObject]:
    """All objects in the image, sorted by (x, y) of their box centres."""
    arr = to_array(image)
    h, w = arr.shape[:2]
    hue, chroma = _hue_and_chroma(arr)
    colourful = chroma >= MIN_CHROMA
    labels, n = ndimage.label(colourful, structure=np.ones((3, 3), bool))
    if n == 0:
        return []
    min_area = MIN_AREA_FRAC * h * w
    slices = ndimage.find_objects(labels)
    side = float(max(h, w))
    found = []
    for k, sl in enumerate(slices, start=1):
        # Pad the slice by one pixel so faint edges around the component count.
        sl = tuple(slice(max(s.start - 1, 0), s.stop + 1) for s in sl)
        comp = labels[sl] == k
        if comp.sum() < min_area:
            continue
        c = chroma[sl][comp]
        votes = np.bincount(_nearest_palette(hue[sl][comp]), weights=c, minlength=len(_COLOUR_NAMES))
        ci = int(votes.argmax())
        # A shape is one flat colour.  A component of scattered hues (noise, texture,
        # two touching objects of different colours) is not a shape, whatever hue
        # wins the vote.  One flat colour: most chroma votes for one palette colour
        # (a small blot of another colour allowed), or the hues are concentrated
        # (a generator's object drifting across the border of two neighbouring
        # palette colours, orange into yellow, blue into purple).
        if votes[ci] < MIN_HUE_PURITY * votes.sum() and _hue_concentration(hue[sl][comp], c) < MIN_HUE_CONCENTRATION:
            continue
        coverage = np.where(labels[sl] == k, chroma[sl] / _PALETTE_CHROMA[ci], 0.0)
        mask = ndimage.binary_fill_holes(coverage >= MASK_COVERAGE)
        area = float(mask.sum())
        if area < min_area:
            continue
        rows = np.flatnonzero(mask.any(axis=1))
        cols = np.flatnonzero(mask.any(axis=0))
        bw, bh = cols[-1] - cols[0] + 1, rows[-1] - rows[0] + 1
        # Larger than any shape the world draws (large = 0.36 of the side): a blob, not an object.
        if max(bw, bh) > MAX_SIDE_FRAC * side:
            continue
        fill = area / float(bw * bh)
        solidity = area / _hull_area(mask)
        cx = (sl[1].start + (cols[0] + cols[-1] + 1) / 2) / w
        cy = (sl[0].start + (rows[0] + rows[-1] + 1) / 2) / h
        extent = max(bw, bh) / side
        found.append(DetectedObject(
            shape=_classify_shape(fill, solidity), colour=_COLOUR_NAMES[ci],
            size="large" if extent >= SIZE_SPLIT else "small",
            x=float(cx), y=float(cy), width=bw / w, height=bh / h,
            fill=fill, solidity=solidity, area=area / (h * w)))
    found.sort(key=lambda o: (o.x, o.y))
    return found


def detect_watermark(image: Image.Image | np.ndarray) -> float:
    """A watermark score: the share of background pixels that deviate from
    the expected background.

    The image is first smoothed with a 3x3 box filter (so pixel noise does
    not count).  Backgrounds vary only vertically and the PIXSTOCK band leaves
    the outermost columns untouched, so each row's background level is the
    median of its neutral pixels in the left and right 5% of the image.
    Pixels away from objects (chroma >= 12, dilated by 2) that differ from
    their row's level by more than 10 grey levels are counted.  Measured on
    300 scenes at 64 px: clean renders score exactly 0, watermarked ones
    0.035-0.34 (median 0.15; low when large objects hide the band), hence
    ``WATERMARK_THRESHOLD`` = 0.01; with Gaussian pixel noise up to sigma 10
    clean scores stay <= 0.002 and marked ones >= 0.08.  Images from a
    trained model differ more: calibrate the threshold on them.
    """
    arr = ndimage.uniform_filter(to_array(image), size=(3, 3, 1), mode="nearest")
    h, w = arr.shape[:2]
    _, chroma = _hue_and_chroma(arr)
    grey = arr.mean(axis=2)
    neutral = ~ndimage.binary_dilation(chroma >= 12.0, iterations=2)
    edge = max(1, int(round(0.05 * w)))
    border = np.zeros((h, w), bool)
    border[:, :edge] = True
    border[:, w - edge:] = True
    vals = np.where(neutral & border, grey, np.nan)[:, border[0]]
    with warnings.catch_warnings():
        # Rows where every border pixel is near an object give NaN (interpolated below).
        warnings.simplefilter("ignore", RuntimeWarning)
        level = np.nanmedian(vals, axis=1)
    known = ~np.isnan(level)
    inner = neutral & ~border
    if not known.any() or not inner.any():
        return 0.0
    level = np.interp(np.arange(h), np.flatnonzero(known), level[known])
    deviates = np.abs(grey - level[:, None]) > 10.0
    return float(deviates[inner].mean())


def _guess_background(arr: np.ndarray) -> str:
    grey = arr.mean(axis=2)
    edge = max(1, arr.shape[1] // 20)
    left = np.median(grey[:, :edge], axis=1)
    top, bottom = np.median(left[: len(left) // 5]), np.median(left[-len(left) // 5:])
    if top - bottom > 20:
        return "gradient"
    return "white" if top > 241 else "light_grey"


def detect(image: Image.Image | np.ndarray) -> SceneSpec:
    """Read a ``SceneSpec`` back from an image: objects sorted by (x, y),
    background guessed from the left edge, ``watermark`` from
    ``detect_watermark``.  For the measurements use ``detect_objects``."""
    arr = to_array(image)
    objs = tuple(o.to_spec() for o in detect_objects(arr))
    return SceneSpec(objs, background=_guess_background(arr),
                     watermark=detect_watermark(arr) >= WATERMARK_THRESHOLD)


# --------------------------------------------------------------------------- judge

def _is_list(value: Any) -> bool:
    return isinstance(value, Sequence) and not isinstance(value, (str, bytes))


def validate_prompt_spec(spec: Mapping[str, Any]) -> dict[str, Any]:
    """Check a prompt spec and return it as plain dicts with defaults filled
    in (count=1, missing fields None).  Any mapping/sequence types are
    accepted (e.g. the read-only ones ``bench.prompts`` hands out).
    Raises ``UserError`` on anything malformed."""
    if not isinstance(spec, Mapping) or not _is_list(spec.get("objects")) or not spec["objects"]:
        raise UserError("prompt spec needs a non-empty 'objects' list")
    groups = []
    for i, g in enumerate(spec["objects"]):
        if not isinstance(g, Mapping):
            raise UserError(f"prompt spec object {i} must be a JSON object")
        unknown = set(g) - {"shape", "colour", "count", "size"}
        if unknown:
            raise UserError(f"prompt spec object {i} has unknown fields {sorted(unknown)}")
        shape, colour, size = g.get("shape"), g.get("colour"), g.get("size")
        count = g.get("count", 1)
        if shape is not None and shape not in SHAPES:
            raise UserError(f"prompt spec object {i}: unknown shape {shape!r}")
        if colour is not None and colour not in COLOURS:
            raise UserError(f"prompt spec object {i}: unknown colour {colour!r}")
        if size is not None and size not in SIZES:
            raise UserError(f"prompt spec object {i}: unknown size {size!r}")
        if not isinstance(count, int) or isinstance(count, bool) or not 1 <= count <= MAX_COUNT:
            raise UserError(f"prompt spec object {i}: count must be an integer 1..{MAX_COUNT}")
        groups.append({"shape": shape, "colour": colour, "count": count, "size": size})
    rel = spec.get("relation")
    if rel is not None:
        if not isinstance(rel, Mapping) or rel.get("type") not in RELATIONS:
            raise UserError(f"prompt spec relation must be null or have type in {list(RELATIONS)}")
        for key in ("a", "b"):
            idx = rel.get(key)
            if not isinstance(idx, int) or not 0 <= idx < len(groups):
                raise UserError(f"prompt spec relation '{key}' must index 'objects'")
        if rel["a"] == rel["b"]:
            raise UserError("prompt spec relation must relate two different objects")
        rel = {"type": rel["type"], "a": rel["a"], "b": rel["b"]}
    background = spec.get("background")
    if background is not None and background not in BACKGROUNDS:
        raise UserError(f"prompt spec background must be null or one of {list(BACKGROUNDS)}")
    unknown = set(spec) - {"objects", "relation", "background"}
    if unknown:
        raise UserError(f"prompt spec has unknown fields {sorted(unknown)}")
    return {"objects": groups, "relation": rel, "background": background}


def _matches(obj: Any, group: dict[str, Any], fields: Sequence[str]) -> bool:
    return all(group[f] is None or getattr(obj, f) == group[f] for f in fields)


def score_objects(prompt_spec: Mapping[str, Any], objects: Sequence[Any]) -> dict[str, Any]:
    """Judge a list of objects (anything with shape/colour/size/x/y) against a
    prompt spec; see the module docstring for the fields."""
    spec = validate_prompt_spec(prompt_spec)
    groups = spec["objects"]

    def field(name: str, keys: Sequence[str]) -> bool | None:
        relevant = [g for g in groups if g[name] is not None]
        if not relevant:
            return None
        return all(any(_matches(o, g, keys) for o in objects) for g in relevant)

    result: dict[str, Any] = {
        "shape": field("shape", ("shape",)),
        "colour": field("colour", ("shape", "colour")),
        "size": field("size", ("shape", "colour", "size")),
        "count": all(sum(_matches(o, g, ("shape", "colour", "size")) for o in objects) == g["count"]
                     for g in groups),
        "relation": None,
    }
    rel = spec["relation"]
    if rel is not None:
        fields = ("shape", "colour", "size")
        a_objs = [o for o in objects if _matches(o, groups[rel["a"]], fields)]
        b_objs = [o for o in objects if _matches(o, groups[rel["b"]], fields)]
        result["relation"] = any(
            oa is not ob and relation_between((oa.x, oa.y), (ob.x, ob.y)) == rel["type"]
            for oa in a_objs for ob in b_objs)
    result["correct"] = all(v for v in result.values() if v is not None)
    return result


def check(prompt_spec: Mapping[str, Any], image: Image.Image | np.ndarray) -> dict[str, Any]:
    """Score an image against a prompt spec, GenEval-style.

    Returns ``{"correct", "shape", "colour", "size", "count", "relation",
    "n_detected", "detected"}``; the field verdicts are True/False/None (None =
    the prompt does not constrain that field), ``detected`` lists the detected
    objects as dicts."""
    objects = detect_objects(image)
    result = score_objects(prompt_spec, objects)
    result["n_detected"] = len(objects)
    result["detected"] = [o.to_spec().to_dict() for o in objects]
    return result


# --------------------------------------------------------------------------- self-test

#: Pairs whose relation is this clear in the truth count in ``compare_scenes``.
_CLEAR_SEP = 0.15
_CLEAR_DIAGONAL = 0.05


def compare_scenes(truth: SceneSpec, found: SceneSpec, max_dist: float = 0.05,
                   pos_tol: float = 0.03) -> dict[str, tuple[int, int]]:
    """Field-by-field agreement of a detected scene with the true one, as
    (hits, total) per field: ``count`` (one per scene), ``shape``, ``colour``,
    ``size``, ``position`` (centre within ``pos_tol``) per true object, and
    ``relation`` per pair of true objects whose relation is clear (>= 0.15
    apart on the dominant axis, not within 0.05 of the diagonal).

    True and found objects are matched greedily by centre distance (at most
    ``max_dist``); an unmatched true object misses all its fields."""
    t, f = truth.objects, found.objects
    pairs = sorted((((a.x - b.x) ** 2 + (a.y - b.y) ** 2) ** 0.5, i, j)
                   for i, a in enumerate(t) for j, b in enumerate(f))
    match: dict[int, int] = {}
    used: set[int] = set()
    for d, i, j in pairs:
        if d <= max_dist and i not in match and j not in used:
            match[i] = j
            used.add(j)
    out = {"count": (int(len(t) == len(f)), 1)}
    for name in ("shape", "colour", "size"):
        out[name] = (sum(getattr(t[i], name) == getattr(f[j], name) for i, j in match.items()), len(t))
    out["position"] = (sum(abs(t[i].x - f[j].x) <= pos_tol and abs(t[i].y - f[j].y) <= pos_tol
                           for i, j in match.items()), len(t))
    hits = total = 0
    for i in range(len(t)):
        for k in range(i + 1, len(t)):
            dx, dy = abs(t[k].x - t[i].x), abs(t[k].y - t[i].y)
            if max(dx, dy) < _CLEAR_SEP or abs(dx - dy) < _CLEAR_DIAGONAL:
                continue
            total += 1
            if i in match and k in match:
                a, b = f[match[i]], f[match[k]]
                hits += relation_between((a.x, a.y), (b.x, b.y)) == relation_between(
                    (t[i].x, t[i].y), (t[k].x, t[k].y))
    out["relation"] = (hits, total)
    return out
