"""Renderer, specs and the scene sampler of the shapes world."""

import json

import numpy as np
import pytest

from bench.errors import UserError
from bench.world import (COLOURS, RELATIONS, SHAPES, SIZES, ObjectSpec, SceneSpec, add_watermark,
                         random_scene, relation_between, render, scene_from_objects)
from bench.world.sample import BORDER, GAP, RELATION_MAX_OFF, RELATION_MIN_GAP


def _scene(watermark=False, background="white"):
    return SceneSpec((ObjectSpec("circle", "red", "large", 0.3, 0.3),
                      ObjectSpec("star", "blue", "small", 0.75, 0.7)),
                     background=background, watermark=watermark)


def test_vocabulary_is_large_enough():
    assert len(SHAPES) >= 4 and len(COLOURS) >= 6 and set(SIZES) == {"small", "large"}
    assert set(RELATIONS) == {"left_of", "right_of", "above", "below"}


def test_spec_round_trips_through_json():
    spec = _scene(watermark=True)
    d = json.loads(json.dumps(spec.to_dict()))
    assert SceneSpec.from_dict(d) == spec
    assert SceneSpec.from_json(spec.to_json()) == spec
    with pytest.raises(UserError):
        ObjectSpec("hexagon", "red", "small", 0.5, 0.5)
    with pytest.raises(UserError):
        ObjectSpec("circle", "red", "small", 1.5, 0.5)


def test_render_is_deterministic_and_sized():
    rng = np.random.default_rng(3)
    for _ in range(10):
        spec = random_scene(rng, watermark=bool(rng.random() < 0.5))
        a, b = render(spec), render(SceneSpec.from_json(spec.to_json()))
        assert a.mode == "RGB" and a.size == (64, 64)
        assert a.tobytes() == b.tobytes()
    assert render(_scene(), size=128).size == (128, 128)
    assert render(_scene()).tobytes() != render(_scene(background="light_grey")).tobytes()


def test_backgrounds_are_neutral_and_shapes_keep_their_colour():
    for bg in ("white", "light_grey", "gradient"):
        arr = np.asarray(render(SceneSpec((), background=bg))).astype(int)
        assert (arr.max(axis=2) == arr.min(axis=2)).all()
    arr = np.asarray(render(_scene()))
    assert tuple(arr[19, 19]) == COLOURS["red"]  # centre of the large red circle


def test_watermark_changes_pixels_but_not_hue():
    clean, marked = np.asarray(render(_scene())), np.asarray(render(_scene(watermark=True)))
    changed = (clean != marked).any(axis=2)
    assert 0.1 < changed.mean() < 0.6
    # The mark is neutral: on neutral background pixels it stays neutral.
    bg = (clean.max(axis=2) == clean.min(axis=2))
    m = marked[bg].astype(int)
    assert (m.max(axis=1) - m.min(axis=1) <= 1).all()
    # add_watermark on an existing square image draws the same mark.
    again = np.asarray(add_watermark(render(SceneSpec((), background="white"))))
    ref = np.asarray(render(SceneSpec((), background="white", watermark=True)))
    assert np.abs(again.astype(int) - ref.astype(int)).max() <= 1


def test_random_scenes_do_not_overlap_and_keep_margins():
    rng = np.random.default_rng(0)
    for _ in range(300):
        spec = random_scene(rng)
        boxes = [(o.x, o.y, SIZES[o.size] / 2) for o in spec.objects]
        for x, y, h in boxes:
            assert BORDER - 1e-9 <= x - h and x + h <= 1 - BORDER + 1e-9
            assert BORDER - 1e-9 <= y - h and y + h <= 1 - BORDER + 1e-9
        for i in range(len(boxes)):
            for j in range(i + 1, len(boxes)):
                (x1, y1, h1), (x2, y2, h2) = boxes[i], boxes[j]
                reach = h1 + h2 + GAP
                assert abs(x1 - x2) >= reach or abs(y1 - y2) >= reach


def test_relations_are_placed_unambiguously():
    rng = np.random.default_rng(1)
    for k in range(200):
        rel = RELATIONS[k % 4]
        sizes = [("small", "large")[int(v)] for v in rng.random(2) < 0.5]
        spec = scene_from_objects(rng, [("circle", "red", sizes[0]), ("square", "blue", sizes[1])],
                                  relation=(rel, 0, 1))
        a, b = spec.objects
        dx, dy = b.x - a.x, b.y - a.y
        along, across = (dx, dy) if rel in ("left_of", "right_of") else (dy, dx)
        assert abs(along) >= RELATION_MIN_GAP and abs(across) <= RELATION_MAX_OFF
        assert relation_between((a.x, a.y), (b.x, b.y)) == rel


def test_same_seed_same_scenes():
    a = [random_scene(np.random.default_rng(7)) for _ in range(3)]
    assert a[0] == a[1] == a[2]
