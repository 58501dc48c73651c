"""The caption grammar."""

import numpy as np

from bench.world import HELD_OUT_PAIRS, ObjectSpec, SceneSpec, caption, misspell
from bench.world.captions import HELD_OUT_PAIRS as CAPTION_HELD_OUT, caption_for_spec, noun_phrase
from bench.world.sample import random_scene
from bench.world.vocab import COLOURS, SHAPES


def test_noun_phrases():
    assert noun_phrase("circle", "red") == "a red circle"
    assert noun_phrase("circle", "orange") == "an orange circle"
    assert noun_phrase("square", "blue", 3) == "three blue squares"
    assert noun_phrase("star", None, 2) == "two stars"
    assert noun_phrase("triangle", "yellow", 1, "small") == "a small yellow triangle"


def test_categories_word_scenes():
    two = SceneSpec((ObjectSpec("circle", "red", "small", 0.2, 0.5),
                     ObjectSpec("star", "green", "large", 0.7, 0.5)))
    assert caption(two, "position", 0, relation=("left_of", 0, 1)) == \
        "a red circle to the left of a green star"
    assert caption(two, "binding", 0) == "a red circle and a green star"
    assert caption(two, "size", 0) == "a small red circle and a large green star"
    three = SceneSpec(tuple(ObjectSpec("square", "blue", "small", x, 0.5) for x in (0.2, 0.5, 0.8)))
    assert caption(three, "counting", 0) == "three blue squares"
    one = SceneSpec((ObjectSpec("star", "green", "large", 0.5, 0.5),), background="white")
    assert caption(one, "descriptive", 0) == \
        "a picture showing a single large green star on a white background"
    assert caption(one, "single", 1) == "a photo of a green star"


def test_misspellings_are_deterministic_typos():
    assert misspell("a red circle", 1) == "a red cirle"
    assert misspell("a red circle", 0) == "a rde circle"
    assert misspell("three blue squares", 1) == "three blue sqaures"
    assert misspell("nothing here", 3) == "nothing here"
    spec = {"objects": [{"shape": "circle", "colour": "red", "count": 1, "size": None}], "relation": None}
    texts = {caption_for_spec(spec, "misspelling", v) for v in range(40)}
    assert "a red circle" not in texts and len(texts) > 4


def test_captions_are_deterministic_given_a_seed():
    def draw(seed):
        rng = np.random.default_rng(seed)
        return [caption(random_scene(rng), "descriptive", int(rng.integers(100))) for _ in range(20)]
    assert draw(5) == draw(5)


def test_held_out_pairs_are_documented_constants():
    assert CAPTION_HELD_OUT == HELD_OUT_PAIRS and len(HELD_OUT_PAIRS) >= 4
    assert all(c in COLOURS and s in SHAPES for c, s in HELD_OUT_PAIRS)
    # Each colour and shape is held out at most once, so every word is still trained.
    assert len({c for c, _ in HELD_OUT_PAIRS}) == len({s for _, s in HELD_OUT_PAIRS}) == len(HELD_OUT_PAIRS)
