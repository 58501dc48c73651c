"""The calibration library (``audit.calibration``) that the shipped thresholds and docs/audit-calibration.md come from.

Fast tests work on hand-made per-image tables (the shape ``image_table``
builds), a few simulated images and the committed result JSON files; one slow
test runs the simulated memorization calibration end to end at a tiny size.
"""

from __future__ import annotations

import json
import math
import shutil

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import roc_auc_score

from audit.calibration import (CALIBRATIONS, CalibrationConfig, CalibrationPaths, GeneratorSettings,
                               MemorizationSettings, choose_thresholds, render_doc, roc, run_calibration,
                               simulate_image, verdict_metrics, write_doc, write_result)
from audit.calibration.memorization import COSINE_GRID, image_scores
from audit.calibration.simulate import COPY_BEHAVIOURS, ICONIC_BEHAVIOUR, sample_rng, scene_of
from bench.errors import UserError
from conftest import REPO, run_cli

RESULTS = REPO / "docs" / "audit-calibration"
DOC = REPO / "docs" / "audit-calibration.md"
SCRIPT = REPO / "scripts" / "calibrate_audit.py"


def _images(rows) -> pd.DataFrame:
    """A per-image table: rows of (category, truth, [(cosine, distance), ...])."""
    return pd.DataFrame([{
        "image_id": f"img{i:03d}", "category": cat, "truth": bool(truth),
        "cosines": np.array([c for c, _ in cands], dtype=float),
        "distances": np.array([d for _, d in cands], dtype=float),
    } for i, (cat, truth, cands) in enumerate(rows)])


def _one(cat, truth, distance, cosine=0.97):
    return (cat, truth, [(cosine, distance)])


# Sorted scores: .05T .06T .07T .10 (fresh) .12T .13T .30 (iconic) .4 .5 .6 (fresh).  F1 peaks at
# t = 0.13 (10/11), placed at (0.13 + 0.30) / 2 = 0.215, which flags the fresh image at 0.10;
# below it, the best is t = 0.07 (F1 6/8), placed at (0.07 + 0.10) / 2 = 0.085.
TABLE = [_one("iconic", True, 0.05), _one("iconic", True, 0.06), _one("iconic", True, 0.07),
         _one("fresh", False, 0.10, 0.99), _one("iconic", True, 0.12), _one("iconic", True, 0.13),
         _one("iconic", False, 0.30), _one("fresh", False, 0.4, 0.99), _one("fresh", False, 0.5, 0.99),
         _one("fresh", False, 0.6, 0.99)]


# --------------------------------------------------------------------------- thresholds

def test_choose_thresholds_is_max_f1_placed_mid_gap():
    chosen = choose_thresholds(_images(TABLE))
    # every true copy's candidate has cosine 0.97: the largest grid value it passes is 0.95, one step below 0.90
    assert chosen["clip_cosine"] == pytest.approx(0.90)
    assert chosen["copy_distance"] == pytest.approx(0.215)
    assert chosen["f1"] == pytest.approx(round(10 / 11, 4))
    assert set(chosen) == {"clip_cosine", "copy_distance", "f1"}  # the committed results' keys


def test_false_copy_constraint_moves_the_threshold_below_the_fresh_look_alike():
    images = _images(TABLE)
    free = choose_thresholds(images)
    assert verdict_metrics(images, free["clip_cosine"], free["copy_distance"])["false_copy_rate_fresh"] == 0.25

    chosen = choose_thresholds(images, max_false_copy_rate=0.0)
    assert chosen["copy_distance"] == pytest.approx(0.085)
    assert chosen["f1"] == pytest.approx(0.75)
    assert chosen["max_false_copy_rate"] == 0.0
    m = verdict_metrics(images, chosen["clip_cosine"], chosen["copy_distance"])
    assert m["n_fresh_flagged"] == 0 and m["tp"] == 3
    # a rate the max-F1 threshold already meets changes nothing
    assert choose_thresholds(images, max_false_copy_rate=0.25)["copy_distance"] == pytest.approx(0.215)


def test_false_copy_constraint_on_another_table():
    """As the shipped default was chosen: F1 on one table, the fresh rate on another generator's images."""
    images = _images([row for row in TABLE if row[0] == "iconic"])  # .05T .06T .07T .12T .13T .30
    assert choose_thresholds(images)["copy_distance"] == pytest.approx(0.215)  # F1 1.0
    other = _images([_one("fresh", False, 0.2, 0.99)] + [_one("fresh", False, 0.9, 0.99)] * 9)  # 10% at 0.2
    chosen = choose_thresholds(images, max_false_copy_rate=0.01, constraint_images=other)
    assert chosen["copy_distance"] == pytest.approx(0.125)  # t = 0.12, mid-way to 0.13: F1 8/9
    assert chosen["f1"] == pytest.approx(round(8 / 9, 4))
    assert choose_thresholds(images, max_false_copy_rate=0.1, constraint_images=other)["copy_distance"] == \
        pytest.approx(0.215)
    with pytest.raises(ValueError, match="fresh"):
        choose_thresholds(images, max_false_copy_rate=0.01)  # no fresh images to hold the rate on


def test_false_copy_constraint_nothing_qualifies():
    images = _images([_one("fresh", False, 0.01, 0.99), _one("iconic", True, 0.05), _one("iconic", False, 0.5)])
    chosen = choose_thresholds(images, max_false_copy_rate=0.0)
    assert chosen["copy_distance"] is None and chosen["f1"] is None


def test_cosine_gate_is_one_step_below_the_weakest_true_copy():
    rows = TABLE + [("iconic", True, [(0.87, 0.08), (0.99, 0.5)])]  # its best candidate (by distance) has cosine 0.87
    assert choose_thresholds(_images(rows))["clip_cosine"] == pytest.approx(0.80)
    no_copies = _images([_one("fresh", False, 0.1), _one("iconic", False, 0.2)])
    assert choose_thresholds(no_copies) == {"clip_cosine": float(COSINE_GRID[0]), "copy_distance": None, "f1": None}


# --------------------------------------------------------------------------- verdict metrics, ROC

def test_verdict_metrics_hand_computed():
    rows = TABLE + [
        ("iconic", False, [(0.5, 0.01), (0.95, 0.35)]),   # its close candidate fails the cosine gate
        ("iconic", True, [(0.99, math.nan), (0.97, 0.5)]),  # no neighbour image: a NaN distance never counts
    ]
    images = _images(rows)
    m = verdict_metrics(images, 0.90, 0.215)
    # flagged: .05 .06 .07 .12 .13 (true) and the fresh .10; missed: the NaN one
    assert m == {"n_images": 12, "n_iconic": 8, "n_fresh": 4, "n_true_copies": 6, "n_flagged": 6,
                 "tp": 5, "fp": 1, "fn": 1, "precision": 5 / 6, "recall": 5 / 6,
                 "false_copy_rate_fresh": 0.25, "n_fresh_flagged": 1}
    assert image_scores(images, 0.90)[-2:].tolist() == [0.35, 0.5]
    # at a lower gate the close candidate counts
    assert verdict_metrics(images, 0.5, 0.215)["fp"] == 2
    # another truth column
    images["truth_detector"] = False
    d = verdict_metrics(images, 0.90, 0.215, "truth_detector")
    assert (d["tp"], d["fp"], d["precision"], d["recall"]) == (0, 6, 0.0, None)


def test_roc_matches_sklearn_and_the_verdicts():
    rng = np.random.default_rng(7)
    n = 60
    truth = rng.random(n) < 0.4
    dist = np.where(truth, rng.integers(20, 200, n), rng.integers(100, 400, n)) / 1000  # overlapping classes
    cos = np.where(rng.random(n) < 0.1, 0.6, 0.97)  # a few images have no candidate past the gate
    images = _images([("iconic" if t else "fresh", t, [(c, d)]) for t, c, d in zip(truth, cos, dist)])
    curve = roc(images, 0.9)
    worst = dist[cos >= 0.9].max() + 1
    assert curve["auroc"] == pytest.approx(roc_auc_score(truth, -np.where(cos >= 0.9, dist, worst)))
    assert curve["fpr"][0] == 0 and curve["tpr"][-1] == 1 and np.all(np.diff(curve["fpr"]) >= 0)
    # each point of the curve is the verdict at that distance threshold
    checked = 0
    for fpr, tpr, thr in zip(curve["fpr"], curve["tpr"], curve["thresholds"]):
        if thr is None or thr == worst:
            continue
        m = verdict_metrics(images, 0.9, thr)
        checked += 1
        assert (m["recall"], m["fp"] / (~truth).sum()) == (pytest.approx(tpr, abs=1e-5), pytest.approx(fpr, abs=1e-5))
    assert checked > 10
    only_copies = images.assign(truth=True)
    assert roc(only_copies, 0.9) == {"auroc": None, "fpr": [], "tpr": [], "thresholds": []}


# --------------------------------------------------------------------------- simulation

@pytest.fixture(scope="module")
def audit_prompts():
    from bench.prompts import load_prompt_set

    ps = load_prompt_set("shapes-audit").prompts
    return [p for p in ps if p.category == "iconic"], [p for p in ps if p.category == "fresh"]


def test_simulate_image_is_a_function_of_its_seed(audit_prompts):
    scene = scene_of(audit_prompts[0][0])
    a, kind_a = simulate_image(scene, "iconic", sample_rng(1, "p", 0))
    b, kind_b = simulate_image(scene, "iconic", sample_rng(1, "p", 0))
    assert kind_a == kind_b and np.array_equal(a, b)
    assert a.dtype == np.uint8 and a.shape == (64, 64, 3)
    c, _ = simulate_image(scene, "iconic", sample_rng(2, "p", 0))
    assert not np.array_equal(a, c)


def test_simulated_copies_are_the_scene_and_variations_are_not(audit_prompts):
    from bench.world import render

    from audit.calibration.memorization import copies_truth

    iconic, fresh = audit_prompts
    for p in fresh[:4]:  # fresh prompts: always a faithful render
        scene = scene_of(p)
        img, kind = simulate_image(scene, "fresh", sample_rng(0, p.id, 0))
        assert kind == "copy"
        diff = np.abs(img.astype(float) - np.asarray(render(scene), dtype=float))
        assert diff.mean() < 8, p.id  # blur, a colour offset and pixel noise, nothing moved
        assert copies_truth(img, scene), p.id
    kinds, variations = [], 0
    for k in range(200):
        p = iconic[k % len(iconic)]
        scene = scene_of(p)
        img, kind = simulate_image(scene, "iconic", sample_rng(0, p.id, k))
        kinds.append(kind.split(":")[0])
        if kind.startswith("variation") and variations < 6:
            variations += 1
            assert not copies_truth(img, scene), (p.id, kind)  # the detector sees the change
    assert variations == 6
    shares = {b: kinds.count(b) / len(kinds) for b in ICONIC_BEHAVIOUR}
    for b, share in ICONIC_BEHAVIOUR.items():
        assert abs(shares[b] - share) < 0.12, shares


# --------------------------------------------------------------------------- results and document

def _copy_results(tmp_path, names=None):
    res = tmp_path / "results"
    res.mkdir()
    for path in RESULTS.glob("*.json"):
        if names is None or path.name in names:
            shutil.copy(path, res / path.name)
    return res


def test_write_doc_from_the_committed_results_is_the_committed_doc(tmp_path):
    before = DOC.read_bytes()
    doc = write_doc(_copy_results(tmp_path), tmp_path / "doc.md")
    assert doc == tmp_path / "doc.md"
    assert doc.read_text() == before.decode()
    assert DOC.read_bytes() == before  # the paths passed in are the only ones written


def test_write_doc_keeps_other_probes_sections(tmp_path):
    res = _copy_results(tmp_path, {"memorization-simulated.json", "watermark-builtin-shapes-ldm.json"})
    (res / "bias-notes.json").write_text("{}")  # no calibration of that name: ignored
    first = render_doc(res)
    assert first.count("### Memorization:") == 1 and first.count("## Watermark (") == 1
    watermark = first[first.index("## Watermark ("):]

    # calibrating memorization again (another tag) adds its section and keeps the watermark one
    result = json.loads((res / "memorization-simulated.json").read_text())
    result.update(tag="simulated-k5", k=5)
    path = write_result(res, "memorization", result)
    assert path == res / "memorization-simulated-k5.json"
    doc = write_doc(res, tmp_path / "out" / "doc.md").read_text()
    assert doc.count("### Memorization:") == 2 and "k = 5." in doc and "k = 20." in doc
    assert doc.endswith(watermark)
    assert doc.index("### Memorization:") < doc.index("## Watermark (")  # the registry's order


def test_registry_and_unknown_probe(tmp_path):
    assert list(CALIBRATIONS) == ["memorization", "false-copies", "watermark"]
    config = CalibrationConfig(CalibrationPaths(tmp_path, tmp_path / "doc.md", tmp_path / "res"))
    with pytest.raises(UserError, match="no calibration for probe 'bias'"):
        run_calibration("bias", config)


def test_settings_are_frozen_and_checked(tmp_path):
    paths = CalibrationPaths.under(tmp_path)
    assert (paths.out, paths.doc, paths.results) == (tmp_path / "build" / "calibration",
                                                      tmp_path / "docs" / "audit-calibration.md",
                                                      tmp_path / "docs" / "audit-calibration")
    assert paths.plots == tmp_path / "docs"
    assert paths.shown(tmp_path / "build" / "x") == "build/x"
    assert CalibrationPaths(tmp_path, tmp_path, tmp_path).shown(tmp_path / "x") == str((tmp_path / "x").resolve())
    with pytest.raises(AttributeError):
        paths.out = tmp_path  # frozen
    with pytest.raises(UserError, match="samples must be at least 1"):
        GeneratorSettings(samples=0)
    with pytest.raises(UserError, match="k must be at least 1"):
        MemorizationSettings(k=0)
    from audit.probes.memorization.run import DEFAULT_K

    assert MemorizationSettings().resolved_k == DEFAULT_K and MemorizationSettings(k=3).resolved_k == 3


# --------------------------------------------------------------------------- the script

def test_script_is_a_thin_wrapper():
    import importlib.util

    spec = importlib.util.spec_from_file_location("calibrate_audit_script", SCRIPT)
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    args = script.build_parser().parse_args(["--simulate", "--samples", "2", "--k", "7", "--no-progress"])
    config = script.config_from_args(args)
    assert config.paths == CalibrationPaths(**{**vars(CalibrationPaths.under(REPO)), "root": REPO})
    assert config.generator == GeneratorSettings(simulate=True, samples=2)
    assert config.memorization == MemorizationSettings(k=7)
    assert config.progress is False


def test_script_help_and_one_line_errors():
    proc = run_cli(str(SCRIPT), "--help", timeout=60)
    assert proc.returncode == 0 and "--simulate" in proc.stdout and "Examples" not in proc.stdout
    assert "python scripts/calibrate_audit.py --simulate" in proc.stdout
    proc = run_cli(str(SCRIPT), "--samples", "0", timeout=60)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == ["error: samples must be at least 1, got 0"]


# --------------------------------------------------------------------------- end to end

@pytest.mark.slow
def test_simulated_memorization_calibration_end_to_end(tmp_path, audit_prompts):
    """3 iconic and 3 fresh prompts, 2 samples per split, against shapes-laion:100, all under tmp_path."""
    iconic, fresh = audit_prompts
    paths = CalibrationPaths(out=tmp_path / "build", doc=tmp_path / "docs" / "doc.md", results=tmp_path / "docs" / "res",
                             root=tmp_path)
    config = CalibrationConfig(paths, GeneratorSettings(simulate=True, samples=2),
                               MemorizationSettings(index_source="shapes-laion:100"), progress=False)
    committed_plot = (REPO / "docs" / "audit-calibration-roc-simulated.png").read_bytes()

    from audit.calibration import calibrate_memorization

    r = calibrate_memorization(config, prompts=iconic[:3] + fresh[:3])
    json.dumps(r)  # JSON-able
    assert r["tag"] == "simulated" and r["simulated"] and r["index"] == {
        "folder": "build/index-shapes-laion-100", "n": 100, "model_key": r["index"]["model_key"]}
    for split in ("calibration", "evaluation"):
        assert (tmp_path / "build" / "runs" / f"memorization-simulated-{split}" / "samples.parquet").is_file()
    e = r["evaluation_at_chosen"]
    assert (e["n_images"], e["n_iconic"], e["n_fresh"]) == (12, 6, 6)
    # the truth is what the simulation made: faithful and loose copies of iconic prompts
    by_behaviour = r["simulation"]["detector_truth_by_behaviour"]
    assert sum(v["n"] for v in by_behaviour.values()) == 6
    assert e["n_true_copies"] == sum(v["n"] for k, v in by_behaviour.items() if k in COPY_BEHAVIOURS)
    assert e["n_fresh_flagged"] == 0  # fresh scenes are in no training row
    assert r["candidate_recall_evaluation"] == 1.0  # each copy's own iconic image is among its candidates
    assert r["roc_evaluation"]["auroc"] is not None
    assert r["roc_plot"] == "docs/audit-calibration-roc-simulated.png" and (tmp_path / r["roc_plot"]).is_file()
    assert (REPO / "docs" / "audit-calibration-roc-simulated.png").read_bytes() == committed_plot

    write_result(paths.results, "memorization", r)
    text = write_doc(paths.results, paths.doc).read_text()
    assert "### Memorization: SIMULATED" in text and "`build/index-shapes-laion-100` (100 rows)" in text

    # a second call reuses the simulated runs (same images) and gives the same figures
    again = calibrate_memorization(config, prompts=iconic[:3] + fresh[:3])
    assert again == r
