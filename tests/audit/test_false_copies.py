"""The false-copy calibration's pieces on hand-made per-image tables (the full run is scripts/calibrate_audit.py)."""

import numpy as np
import pandas as pd
import pytest

from audit.calibration.false_copies import (CHOICE_RATE, MIN_IMAGES, RELATIVE_GRID, choose_relative, detection,
                                            false_copies_markdown, false_copy_rates, flagged, per_image, samples_for,
                                            tradeoff)


def images(rows):
    """Per-image rows of (cosines, distances, relative distances[, truth])."""
    out = pd.DataFrame({"cosines": [np.array(r[0], float) for r in rows],
                        "distances": [np.array(r[1], float) for r in rows],
                        "relative": [np.array(r[2], float) for r in rows]})
    if rows and len(rows[0]) > 3:
        out["truth"] = [r[3] for r in rows]
    return out


def test_samples_per_prompt_reach_the_minimum_images():
    for n_prompts in (6, 24, 40, 48, 200, 500):
        k = samples_for(n_prompts)
        assert k * n_prompts >= MIN_IMAGES and (k - 1) * n_prompts < MIN_IMAGES or k == 1


def test_an_image_is_flagged_when_any_candidate_passes_the_verdict():
    imgs = images([([0.9, 0.9], [0.30, 0.10], [1.5, 0.30]),    # second candidate: close and stands out
                   ([0.9], [0.10], [1.2]),                      # close, but a common scene
                   ([0.5], [0.01], [0.05])])                    # CLIP finds it unrelated
    assert flagged(imgs, "absolute", 0.85, 0.135, 0.45).tolist() == [True, True, False]
    assert flagged(imgs, "relative", 0.85, 0.135, 0.45).tolist() == [True, False, False]
    assert flagged(imgs, "both", 0.85, 0.135, 0.45).tolist() == [True, False, False]


def test_relative_threshold_is_the_largest_that_keeps_every_category_under_the_choice_rate():
    # 200 images per category; category "b" has one image at each relative distance 0.30, 0.52, 0.62.
    clean = images([([0.9], [0.1], [2.0])] * 200)
    b = images([([0.9], [0.1], [r]) for r in [0.30, 0.52, 0.62] + [2.0] * 197])
    negatives = {"a": clean, "b": b}
    assert CHOICE_RATE == 0.005  # one image in 200: 0.30 and 0.52 allowed one at a time, not both
    chosen = choose_relative(negatives, 0.85, 0.135)
    assert chosen == 0.5  # at 0.55 two images of "b" (1%) pass
    rates = false_copy_rates(negatives, "both", 0.85, 0.135, chosen)
    assert rates["b"]["k"] == 1 and rates["a"]["k"] == 0 and rates["b"]["ci95"][0] < 0.005 < rates["b"]["ci95"][1]


def test_detection_and_tradeoff_count_true_and_false_copies():
    positives = images([([0.9], [0.05], [0.2], True), ([0.9], [0.05], [0.6], True),
                        ([0.9], [0.05], [0.3], False), ([0.9], [0.5], [2.0], False)])
    d = detection(positives, "both", 0.85, 0.135, 0.45)
    assert d["true_copies"] == 2 and d["recall"]["k"] == 1 and d["precision"]["n"] == 2
    negatives = {"x": images([([0.9], [0.1], [0.4]), ([0.9], [0.1], [3.0])])}
    with_negatives = detection(positives, "both", 0.85, 0.135, 0.45, negatives)
    assert with_negatives["precision"]["n"] == 3  # the flagged negative counts against precision
    curve = tradeoff(negatives, positives)
    assert [c["relative"] for c in curve] == RELATIVE_GRID.tolist()
    at = {c["relative"]: c for c in curve}
    assert at[0.25]["recall"] == 0.5 and at[0.65]["recall"] == 1.0
    assert at[0.35]["worst_false_copy_rate"] == 0.0 and at[0.4]["worst_false_copy_rate"] == 0.5


def test_per_image_reads_the_audit_table():
    table = pd.DataFrame({"image_id": ["i", "i", "j"], "prompt_id": ["p", "p", "q"], "category": ["c", "c", "d"],
                          "path": ["a.png", "a.png", "b.png"], "rank": [1, 0, 0], "clip_cosine": [0.8, 0.9, 0.7],
                          "copy_distance": [0.3, 0.2, 0.1], "relative_distance": [1.0, 0.5, 0.4],
                          "n_within": [4, 4, 0]})
    out = per_image(table)
    assert out.image_id.tolist() == ["i", "j"] and out.cosines[0].tolist() == [0.9, 0.8]  # rank order
    assert out.n_within.tolist() == [4, 0]


def test_markdown_names_every_category_and_verdict():
    rate = {"k": 1, "n": 200, "rate": 0.005, "ci95": [0.001, 0.028]}
    block = {"false_copy_rate": {"fresh": rate, "role": rate},
             "simulated": {"true_copies": 3, "recall": rate, "precision": rate},
             "generated_iconic": {"true_copies": 0, "recall": {**rate, "n": 0}, "precision": {**rate, "n": 0}}}
    result = {"mode": "m", "index": {"folder": "idx", "n": 10}, "k": 20, "min_images": 200,
              "split_seeds": {"calibration": 1, "evaluation": 2}, "target_false_copy_rate": 0.01,
              "thresholds": {"clip_cosine": 0.85, "copy_distance": 0.135, "relative_distance": 0.45,
                             "relative_chosen_on_calibration": 0.45, "choice_rate": 0.005},
              "evaluation": {v: block for v in ("absolute", "relative", "both")},
              "n_within_evaluation": {"fresh": {"n": 2, "min": 0, "median": 1, "p95": 2, "max": 2}},
              "memorizing_model": None, "tradeoff_evaluation": {}}
    text = false_copies_markdown(result)
    assert "| fresh | 0.005 [0.001, 0.028] (1/200)" in text and "| role |" in text
    assert "relative distance <= **0.45**" in text and "not measured here" in text
    with pytest.raises(KeyError):
        false_copies_markdown({**result, "evaluation": {}})


def test_disagreements_name_the_fields_and_draw_the_pairs(tmp_path):
    """An iconic image the audit flags but the detector's truth rejects (one object reshaped) is counted, its
    differing field named, and drawn beside its training render; an agreeing image is not."""
    import dataclasses

    from audit.calibration.false_copies import disagreements
    from audit.calibration.simulate import scene_of
    from bench.prompts import load_prompt_set
    from bench.world import render

    prompt = next(p for p in load_prompt_set("shapes-audit").prompts if p.category == "iconic")
    scene = scene_of(prompt)
    first = scene.objects[0]
    other_shape = next(s for s in ("circle", "square", "triangle", "star") if s != first.shape)
    reshaped = dataclasses.replace(scene, objects=[dataclasses.replace(first, shape=other_shape), *scene.objects[1:]])
    render(scene).save(tmp_path / "same.png")
    render(reshaped).save(tmp_path / "reshaped.png")
    table = images([([0.9], [0.05], [0.2], True), ([0.9], [0.10], [0.3], False)])
    table["run"], table["path"], table["prompt_id"] = str(tmp_path), ["same.png", "reshaped.png"], prompt.id
    out = disagreements(table, {prompt.id: prompt}, 0.85, 0.135, 0.45, tmp_path / "sheet.png")
    assert out["n"] == 1 and out["fields_read_differently"]["shape"] == 1
    assert out["fields_read_differently"]["count"] == 0 and out["sheet"] == "sheet.png"
    from PIL import Image

    assert Image.open(tmp_path / "sheet.png").size == (6 * 2 * 64, 64)  # one row of six pairs, padded
