"""Seeded scene sampling: non-overlapping placement and unambiguous relations.

All randomness comes from a ``numpy.random.Generator`` passed in by the
caller, so a seed fixes every scene.  Objects are placed by rejection
sampling of bounding-box centres:

* every bounding box stays ``BORDER`` inside the image;
* any two boxes are at least ``GAP`` apart along x or along y (no overlap,
  and the detector sees separate connected components);
* for "A <relation> B" the centres differ by at least ``RELATION_MIN_GAP``
  along the relation's axis and by at most ``RELATION_MAX_OFF`` across it,
  far from the judge's decision boundary (``vocab.relation_between``).

Positions are rounded to 4 decimals so that specs print compactly; the
constraints are checked after rounding.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from functools import lru_cache
from typing import Any

import numpy as np

from bench.errors import UserError
from bench.world.detect import score_objects, validate_prompt_spec
from bench.world.spec import ObjectSpec, SceneSpec
from bench.world.vocab import BACKGROUNDS, COLOURS, HELD_OUT_PAIRS, RELATIONS, SHAPES, SIZES

BORDER = 0.03
GAP = 0.06
RELATION_MIN_GAP = 0.25
RELATION_MAX_OFF = 0.12
#: At most this many large objects in a randomly sampled scene, to keep
#: scenes uncluttered (four large boxes fill the canvas in a tight 2x2 grid;
#: ``place_objects`` can still place them when asked explicitly).
MAX_LARGE = 2

_COLOUR_NAMES = tuple(COLOURS)
_SIZE_NAMES = tuple(SIZES)
_HELD_OUT = frozenset(HELD_OUT_PAIRS)


class PlacementError(RuntimeError):
    """No non-overlapping placement found (too many or too large objects)."""


def _relation_ok(rel: str, a: tuple[float, float], b: tuple[float, float]) -> bool:
    """Does "a <rel> b" hold with the sampler's margins?"""
    dx, dy = b[0] - a[0], b[1] - a[1]
    along, across = {"left_of": (dx, dy), "right_of": (-dx, dy),
                     "above": (dy, dx), "below": (-dy, dx)}[rel]
    return along >= RELATION_MIN_GAP and abs(across) <= RELATION_MAX_OFF


_BATCH = 8  # candidates drawn per generator call (one call is cheaper than eight)


def _candidates(rng: np.random.Generator, lo: float, hi: float) -> list[tuple[float, float]]:
    """``_BATCH`` uniform centres in [lo, hi]^2 (unrounded)."""
    u = rng.random(2 * _BATCH).tolist()
    span = hi - lo
    return [(lo + span * u[k], lo + span * u[k + 1]) for k in range(0, 2 * _BATCH, 2)]


def _fits(x: float, y: float, half: float, placed: list[tuple[float, float, float]]) -> bool:
    """No placed box comes within ``GAP`` of the box (x, y, half)."""
    for px, py, ph in placed:
        reach = half + ph + GAP
        if abs(x - px) < reach and abs(y - py) < reach:
            return False
    return True


def _related_candidates(rng: np.random.Generator, rel: str, a: tuple[float, float],
                        lo: float, hi: float, min_along: float) -> list[tuple[float, float]]:
    """``_BATCH`` centres for b with "a <rel> b" inside [lo, hi]^2 (unrounded), or
    [] if a sits too close to the edge to leave ``min_along`` of room."""
    axis, sign = {"left_of": (0, 1), "right_of": (0, -1), "above": (1, 1), "below": (1, -1)}[rel]
    a_along, a_across = a if axis == 0 else (a[1], a[0])
    room = (hi - a_along) if sign > 0 else (a_along - lo)
    if room < min_along:
        return []
    c_lo = max(lo, a_across - RELATION_MAX_OFF)
    c_hi = min(hi, a_across + RELATION_MAX_OFF)
    u = rng.random(2 * _BATCH).tolist()
    out = []
    for k in range(0, 2 * _BATCH, 2):
        along = a_along + sign * (min_along + (room - min_along) * u[k])
        across = c_lo + (c_hi - c_lo) * u[k + 1]
        out.append((along, across) if axis == 0 else (across, along))
    return out


def place_objects(rng: np.random.Generator, sizes: Sequence[str],
                  relation: tuple[str, int, int] | None = None,
                  max_restarts: int = 500, batches_per_object: int = 5) -> list[tuple[float, float]]:
    """Sample centres for objects of the given size classes.

    Objects are placed one after another by rejection sampling (candidates
    drawn ``_BATCH`` at a time); if one finds no room in
    ``batches_per_object`` batches, the whole scene starts again.
    ``relation`` = (type, a, b) asks for "object a <type> object b": b's
    candidates are drawn in the band the relation allows next to a, far
    enough along the axis to clear a.  Raises ``PlacementError`` if nothing
    is found in ``max_restarts`` restarts.
    """
    n = len(sizes)
    halves = [SIZES[s] / 2 for s in sizes]
    # Large boxes first: they need the most room, and failing early is cheap.
    order = sorted(range(n), key=lambda i: -halves[i])
    if relation is not None:
        rel, ia, ib = relation
        if rel not in RELATIONS:
            raise ValueError(f"unknown relation {rel!r}")
        # Place the related pair first, while the canvas is empty.
        order = [ia, ib] + [i for i in order if i not in (ia, ib)]
    for _ in range(max_restarts):
        pos: dict[int, tuple[float, float]] = {}
        boxes: list[tuple[float, float, float]] = []
        for i in order:
            lo, hi = BORDER + halves[i], 1 - BORDER - halves[i]
            related = relation is not None and i == relation[2] and relation[1] in pos
            if related:
                a = pos[relation[1]]
                # |across| <= RELATION_MAX_OFF < box reach, so only distance along clears a.
                min_along = max(RELATION_MIN_GAP, halves[relation[1]] + halves[i] + GAP) + 1e-4
            for _ in range(batches_per_object):
                if related:
                    cands = _related_candidates(rng, relation[0], a, lo, hi, min_along)
                    if not cands:
                        break  # a sits too close to the edge: start again
                else:
                    cands = _candidates(rng, lo, hi)
                for x, y in cands:
                    # Round first, so the checks hold for the stored numbers.
                    x, y = round(x, 4), round(y, 4)
                    if not (lo <= x <= hi and lo <= y <= hi):
                        continue
                    if related and not _relation_ok(relation[0], a, (x, y)):
                        continue
                    if not _fits(x, y, halves[i], boxes):
                        continue
                    pos[i] = (x, y)
                    boxes.append((x, y, halves[i]))
                    break
                if i in pos:
                    break
            if i not in pos:
                break
        else:
            return [pos[i] for i in range(n)]
    raise PlacementError(f"could not place {n} objects of sizes {list(sizes)}"
                         + (f" with relation {relation}" if relation else ""))


@lru_cache(maxsize=2)
def allowed_pairs(exclude_held_out: bool) -> tuple[tuple[str, str], ...]:
    """All (colour, shape) pairs, optionally without ``HELD_OUT_PAIRS``."""
    return tuple((c, s) for c in _COLOUR_NAMES for s in SHAPES
                 if not (exclude_held_out and (c, s) in _HELD_OUT))


def random_scene(rng: np.random.Generator, n_objects: int | None = None,
                 exclude_held_out: bool = True, watermark: bool = False,
                 background: str | None = None) -> SceneSpec:
    """A random scene of 1-4 objects (uniform), with random colours, shapes,
    sizes (at most ``MAX_LARGE`` large) and background."""
    if n_objects is None:
        n_objects = int(rng.integers(1, 5))
    pairs = allowed_pairs(exclude_held_out)
    picks = rng.integers(len(pairs), size=n_objects)
    sizes = [_SIZE_NAMES[k] for k in rng.integers(len(_SIZE_NAMES), size=n_objects)]
    large = [i for i, s in enumerate(sizes) if s == "large"]
    for i in large[MAX_LARGE:]:
        sizes[i] = "small"
    xy = place_objects(rng, sizes)
    objs = tuple(ObjectSpec(pairs[k][1], pairs[k][0], s, x, y)
                 for k, s, (x, y) in zip(picks, sizes, xy))
    if background is None:
        background = BACKGROUNDS[int(rng.integers(len(BACKGROUNDS)))]
    return SceneSpec(objs, background=background, watermark=watermark)


def scene_from_objects(rng: np.random.Generator, objects: Iterable[tuple[str, str, str]],
                       relation: tuple[str, int, int] | None = None,
                       background: str | None = None, watermark: bool = False) -> SceneSpec:
    """Place the given (shape, colour, size) objects at random, honouring ``relation``."""
    objects = list(objects)
    xy = place_objects(rng, [o[2] for o in objects], relation)
    if background is None:
        background = BACKGROUNDS[int(rng.integers(len(BACKGROUNDS)))]
    return SceneSpec(tuple(ObjectSpec(s, c, z, x, y) for (s, c, z), (x, y) in zip(objects, xy)),
                     background=background, watermark=watermark)


def scene_for_prompt_spec(prompt_spec: Mapping[str, Any], seed: int = 0, max_attempts: int = 100) -> SceneSpec:
    """A scene that satisfies a prompt spec (format in ``bench.world.detect``).

    Null fields are filled at random (avoiding ``HELD_OUT_PAIRS``; one choice
    per group), null sizes are large with probability 1/2 only in scenes of at
    most two objects.  Each candidate is judged with ``score_objects`` on its
    own spec and redrawn until it passes, so the result is correct by the
    judge's rules.  Raises ``UserError`` if nothing is found.
    """
    spec = validate_prompt_spec(prompt_spec)
    rng = np.random.default_rng(seed)
    groups = spec["objects"]
    total = sum(g["count"] for g in groups)
    for _ in range(max_attempts):
        objects: list[tuple[str, str, str]] = []
        first: list[int] = []
        for g in groups:
            shapes = [g["shape"]] if g["shape"] else list(SHAPES)
            colours = [g["colour"]] if g["colour"] else list(_COLOUR_NAMES)
            choices = [(s, c) for s in shapes for c in colours
                       if (c, s) not in _HELD_OUT or (g["shape"] and g["colour"])]
            shape, colour = choices[int(rng.integers(len(choices)))]
            size = g["size"] or ("large" if total <= 2 and rng.random() < 0.5 else "small")
            first.append(len(objects))
            objects += [(shape, colour, size)] * g["count"]
        rel = spec["relation"]
        relation = None if rel is None else (rel["type"], first[rel["a"]], first[rel["b"]])
        try:
            scene = scene_from_objects(rng, objects, relation, background=spec["background"])
        except PlacementError:
            continue
        if score_objects(spec, scene.objects)["correct"]:
            return scene
    raise UserError(f"no scene found that satisfies prompt spec {prompt_spec!r}")
