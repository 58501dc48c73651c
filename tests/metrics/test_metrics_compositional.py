"""Compositional accuracy with the world's exact detector, and its per-category aggregation."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from bench.errors import UserError
from bench.metrics import compositional_accuracy
from bench.world import render, scene_for_prompt_spec

RED_CIRCLE = {"objects": [{"shape": "circle", "colour": "red", "count": 1, "size": None}], "relation": None}
TWO_BLUE_SQUARES = {"objects": [{"shape": "square", "colour": "blue", "count": 2, "size": None}], "relation": None}


def test_real_detector_on_renders(tmp_path):
    specs = {"p-circle": RED_CIRCLE, "p-squares": TWO_BLUE_SQUARES}
    good_circle = render(scene_for_prompt_spec(RED_CIRCLE, seed=1))
    good_squares = render(scene_for_prompt_spec(TWO_BLUE_SQUARES, seed=2))
    path = tmp_path / "squares.png"
    good_squares.save(path)
    samples = pd.DataFrame(
        {"prompt_id": ["p-circle", "p-circle", "p-squares"], "category": ["single_object", "single_object", "counting"]}
    )
    # The second "red circle" image shows two blue squares: wrong.
    rep = compositional_accuracy(samples, [good_circle, np.asarray(good_squares), path], specs=specs)
    assert rep.per_image["correct"].tolist() == [True, False, True]
    acc = rep.per_group.set_index("category")["accuracy"]
    assert acc["single_object"] == 0.5 and acc["counting"] == 1.0
    assert rep.overall.value == pytest.approx(2 / 3) and rep.overall.n == 3
    assert rep.per_image["relation"].isna().all()  # not constrained by these prompts


def test_aggregation_with_a_stub_judge():
    samples = pd.DataFrame(
        {
            "prompt_id": ["a", "a", "b", "c"],
            "category": ["x", "x", "x", "y"],
            "guidance": [1.0, 3.0, 3.0, 3.0],
            "spec": [{"ok": True}, {"ok": False}, {"ok": True}, {"ok": False}],
        }
    )

    def judge(spec, image):
        return {
            "correct": spec["ok"],
            "shape": spec["ok"],
            "colour": None,
            "size": None,
            "count": True,
            "relation": None,
        }

    rep = compositional_accuracy(samples, [None] * 4, check_fn=judge)
    g = rep.per_group.set_index("category")
    assert g.loc["x", "accuracy"] == pytest.approx(2 / 3) and g.loc["x", "n"] == 3
    assert g.loc["y", "accuracy"] == 0.0 and g.loc["x", "count_accuracy"] == 1.0
    assert np.isnan(g.loc["x", "colour_accuracy"])
    by_guidance = compositional_accuracy(samples, [None] * 4, check_fn=judge, by=["guidance", "category"])
    assert len(by_guidance.per_group) == 3


def test_missing_spec_and_misaligned_images_are_user_errors():
    samples = pd.DataFrame({"prompt_id": ["a"], "category": ["x"]})
    with pytest.raises(UserError, match="prompt a has no spec"):
        compositional_accuracy(samples, [None], check_fn=lambda s, i: {"correct": True})
    with pytest.raises(UserError, match="align them"):
        compositional_accuracy(samples, [None, None], specs={"a": RED_CIRCLE})
