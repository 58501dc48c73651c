"""The visible-watermark probe: separates synthetic marks from clean images it never saw; save/load; refusals."""

import json

import numpy as np
import pytest

from audit.probes.watermark.overlays import add_random_watermark
from audit.probes.watermark.classifier import (ProbeConfig, WatermarkProbe, fit_logistic, load_or_train_probe, roc_auc,
                                   sigmoid, train_probe, youden_threshold)
from bench.errors import UserError
from bench.features import get_extractor
from bench.models.evaluator_clip import DEFAULT_DIR
from bench.world import random_scene, render

SMALL = ProbeConfig(n_base=200, corpus_rows=1000, seed=0)


@pytest.fixture(scope="module")
def extractor():
    return get_extractor(f"clip:local-dir:{DEFAULT_DIR}")


@pytest.fixture(scope="module")
def probe(extractor):
    return train_probe(extractor, SMALL, progress=False)


def test_fold_of_standardisation_gives_the_same_scores_as_sklearn():
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    rng = np.random.default_rng(0)
    x = rng.normal(size=(300, 8)) * rng.uniform(0.1, 3, 8) + rng.normal(size=8)
    y = (x[:, 0] + 0.5 * x[:, 3] + rng.normal(0, 0.5, 300)) > 0
    w, b = fit_logistic(x, y, c=1.0)
    ref = make_pipeline(StandardScaler(), LogisticRegression(C=1.0, max_iter=5000)).fit(x, y)
    np.testing.assert_allclose(sigmoid(x @ w + b), ref.predict_proba(x)[:, 1], atol=1e-5)


def test_youden_threshold_separates_separable_scores():
    scores = np.array([0.1, 0.2, 0.3, 0.6, 0.7, 0.9])
    labels = np.array([0, 0, 0, 1, 1, 1])
    t = youden_threshold(scores, labels)
    assert 0.3 < t <= 0.6 and roc_auc(scores, labels) == 1.0
    assert np.isnan(roc_auc(scores, np.ones(6)))


def test_probe_separates_marks_on_held_out_scenes(extractor, probe):
    """Fresh random scenes (not corpus rows) with marks from another seed: AUROC well above chance (0.5).

    The bound is low on purpose: the built-in 128-d CLIP carries little watermark
    signal (validation AUROC ~0.79 with 3000 base images, docs/audit-calibration.md)."""
    rng = np.random.default_rng(123)
    clean = [np.asarray(render(random_scene(rng))) for _ in range(120)]
    marked = [add_random_watermark(im, (99, i))[0] for i, im in enumerate(clean)]
    scores = probe.scores(extractor(clean + marked))
    labels = np.r_[np.zeros(len(clean)), np.ones(len(marked))]
    auc = roc_auc(scores, labels)
    assert auc > 0.6, auc
    assert probe.info["training"]["val_auroc"] > 0.6
    assert 0.0 < probe.threshold < 1.0


def test_save_load_round_trip_and_refusals(tmp_path, extractor, probe):
    path = probe.save(tmp_path / "probe.safetensors")
    meta = json.loads(path.with_suffix(".json").read_text())
    assert meta["extractor_key"] == extractor.key and meta["recipe_version"] == 1
    assert meta["threshold"] == probe.threshold and "val_auroc" in meta["training"]
    back = WatermarkProbe.load(path, extractor.key)
    x = np.random.default_rng(0).normal(size=(5, extractor.dim)).astype(np.float32)
    np.testing.assert_allclose(back.scores(x), probe.scores(x), rtol=1e-6)
    assert back.threshold == probe.threshold and back.extractor_key == probe.extractor_key

    other = extractor.key.replace("clip-", "clip-other-", 1)
    with pytest.raises(UserError, match="trained for extractor"):
        WatermarkProbe.load(path, other)
    with pytest.raises(UserError, match="expects"):
        back.scores(np.zeros((2, extractor.dim + 1), np.float32))
    path.write_bytes(b"not a safetensors file")
    with pytest.raises(UserError, match="unreadable"):
        WatermarkProbe.load(path)
    with pytest.raises(UserError, match="needs both"):
        WatermarkProbe.load(tmp_path / "missing.safetensors")


def test_second_use_loads_the_cached_probe(tmp_path, extractor, monkeypatch):
    config = ProbeConfig(n_base=20, corpus_rows=1000, seed=3)
    first, how1, path1 = load_or_train_probe(extractor, config, cache_root=tmp_path, progress=False)
    second, how2, path2 = load_or_train_probe(extractor, config, cache_root=tmp_path, progress=False)
    assert (how1, how2) == ("trained", "cached") and path1 == path2
    assert path1.name.startswith(extractor.key) and path1.suffix == ".safetensors"
    np.testing.assert_array_equal(first.weight, second.weight)
    # another training setting is another cache entry
    assert load_or_train_probe(extractor, ProbeConfig(n_base=20, corpus_rows=1000, seed=4),
                               cache_root=tmp_path, progress=False)[1] == "trained"


def test_too_few_base_images_is_a_user_error(extractor, tmp_path):
    with pytest.raises(UserError, match="at least 10"):
        train_probe(extractor, ProbeConfig(n_base=3, corpus_rows=1000), progress=False)
    with pytest.raises(UserError, match="does not exist"):
        train_probe(extractor, ProbeConfig(source=str(tmp_path / "nope"), n_base=20), progress=False)


def test_the_default_head_ships_with_the_package(tmp_path):
    """EfficientNet-Lite0 + the default settings: the shipped head is loaded, nothing is trained or cached."""
    from audit.probes.watermark.classifier import SHIPPED_HEADS, default_config
    from audit.probes.watermark.run import DEFAULT_PROBE_FEATURES

    effnet = get_extractor(DEFAULT_PROBE_FEATURES)
    probe, how, path = load_or_train_probe(effnet, default_config(), cache_root=tmp_path, progress=False)
    assert how == "shipped" and path.parent == SHIPPED_HEADS and not any(tmp_path.iterdir())
    assert probe.info["training"]["val_auroc"] > 0.95 and 0 < probe.threshold < 1
