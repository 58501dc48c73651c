"""CLIP score vs torchmetrics, CMMD vs the paper's reference code, precision/recall vs brute force and prdc."""

from __future__ import annotations

import importlib
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
from metrics_helpers import FAKE_OTHER_KEY
from scipy.spatial.distance import cdist

from bench.errors import UserError
from bench.features.base import FeatureSet
from bench.metrics import MetricWarning, clip_score_report, clip_scores, cmmd, mmd_rbf, precision_recall


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(0)


# bench.metrics re-exports the functions under the module names; get the modules themselves.
cmmd_module = importlib.import_module("bench.metrics.cmmd")
pr_module = importlib.import_module("bench.metrics.precision_recall")

CLIP_KEY = "clip-tiny__w2222222222222222__openclip-bicubic-shortest-32__float32"


def unit(x):
    return x / np.linalg.norm(x, axis=1, keepdims=True)


# ---- CLIP score ----------------------------------------------------------------------------------


def test_clip_score_matches_torchmetrics_update(rng):
    torch = pytest.importorskip("torch")
    from torchmetrics.functional.multimodal.clip_score import _clip_score_update

    n, d = 6, 8
    img = rng.normal(size=(n, d)) + 1.0
    txt = img + 0.7 * rng.normal(size=(n, d))  # mostly positive cosines
    prompts = [f"prompt {i}" for i in range(n)]

    # torchmetrics' update with a stand-in model and processor that return our embeddings.
    class Processor:
        def __call__(self, images=None, text=None, **_):
            if images is not None:
                return {"pixel_values": torch.stack(images)}
            ids = torch.tensor([[prompts.index(t)] for t in text])
            return {"input_ids": ids, "attention_mask": torch.ones_like(ids)}

    class Model:
        config = SimpleNamespace()

        def to(self, device):
            return self

        def get_image_features(self, pixel_values):
            return torch.from_numpy(img)[pixel_values[:, 0, 0, 0].long()]

        def get_text_features(self, input_ids, attention_mask):
            return torch.from_numpy(txt)[input_ids[:, 0]]

    images = [torch.full((3, 2, 2), float(i)) for i in range(n)]
    tm_scores, count = _clip_score_update(images, prompts, Model(), Processor())
    ours = clip_scores(img, txt)
    np.testing.assert_allclose(ours, np.maximum(tm_scores.numpy(), 0), rtol=1e-10)
    # torchmetrics' compute: max(mean, 0); equal to ours when every cosine is positive.
    if (tm_scores > 0).all():
        assert ours.mean() == pytest.approx(max(float(tm_scores.sum()) / count, 0.0), rel=1e-10)


def test_clip_score_clamps_each_image_at_zero():
    img = np.array([[1.0, 0.0], [1.0, 0.0], [1.0, 1.0]])
    txt = np.array([[1.0, 0.0], [-1.0, 0.0], [0.0, 3.0]])
    np.testing.assert_allclose(clip_scores(img, txt), [100.0, 0.0, 100 / np.sqrt(2)])


def test_clip_score_report_per_prompt_category_and_truncation():
    samples = pd.DataFrame(
        {
            "image_id": ["a0", "a1", "b0", "c0"],
            "prompt_id": ["a", "a", "b", "c"],
            "category": ["colors", "colors", "colors", "counting"],
            "guidance": [7.5] * 4,
        }
    )
    img = np.array([[1.0, 0.0], [0.6, 0.8], [0.0, 1.0], [1.0, 0.0]])
    txt = np.array([[1.0, 0.0], [1.0, 0.0], [1.0, 0.0], [-1.0, 0.0]])
    rep = clip_score_report(samples, FeatureSet(img, CLIP_KEY), txt, truncated=[True, True, False, False])
    np.testing.assert_allclose(rep.per_image["clip_score"], [100, 60, 0, 0], atol=1e-9)
    a = rep.per_prompt.set_index("prompt_id").loc["a"]
    assert a["mean"] == pytest.approx(80) and a["max"] == pytest.approx(100) and a["n"] == 2 and a["truncated"]
    colors = rep.per_group.set_index("category").loc["colors"]
    assert colors["mean"] == pytest.approx(160 / 3) and colors["n_images"] == 3 and colors["n_prompts"] == 2
    assert colors["n_truncated_prompts"] == 1
    assert rep.overall.value == pytest.approx(40.0) and rep.overall.metric == "CLIPScore"
    assert rep.overall.details["n_truncated_prompts"] == 1 and rep.overall.extractor == CLIP_KEY
    by_two = clip_score_report(samples, img, txt, by=["guidance", "category"])
    assert list(by_two.per_group.columns[:2]) == ["guidance", "category"]


def test_clip_score_bad_input():
    samples = pd.DataFrame({"prompt_id": ["a", "b"], "category": ["x", "y"]})
    with pytest.raises(UserError, match="do not align"):
        clip_score_report(samples, np.ones((2, 3)), np.ones((3, 3)))
    with pytest.raises(UserError, match="lacks column"):
        clip_score_report(samples.drop(columns="category"), np.ones((2, 3)), np.ones((2, 3)))


# ---- CMMD ----------------------------------------------------------------------------------------


def cmmd_reference(x, y):
    """Direct numpy transcription of google-research cmmd/distance.py (jnp -> np)."""
    x_sqnorms = np.diag(np.matmul(x, x.T))
    y_sqnorms = np.diag(np.matmul(y, y.T))
    gamma = 1 / (2 * 10**2)
    k_xx = np.mean(
        np.exp(-gamma * (-2 * np.matmul(x, x.T) + np.expand_dims(x_sqnorms, 1) + np.expand_dims(x_sqnorms, 0)))
    )
    k_xy = np.mean(
        np.exp(-gamma * (-2 * np.matmul(x, y.T) + np.expand_dims(x_sqnorms, 1) + np.expand_dims(y_sqnorms, 0)))
    )
    k_yy = np.mean(
        np.exp(-gamma * (-2 * np.matmul(y, y.T) + np.expand_dims(y_sqnorms, 1) + np.expand_dims(y_sqnorms, 0)))
    )
    return 1000 * (k_xx + k_yy - 2 * k_xy)


def test_cmmd_matches_reference_code(rng, monkeypatch):
    x = unit(rng.normal(size=(23, 10)))
    y = unit(rng.normal(size=(31, 10)) + 0.5)
    ref = cmmd_reference(x, y)
    assert cmmd(x, y).value == pytest.approx(ref, rel=1e-10)
    monkeypatch.setattr(cmmd_module, "_BLOCK", 4)  # row blocks give the same number
    assert mmd_rbf(x, y) == pytest.approx(ref, rel=1e-10)
    # And the kernel itself, pair by pair.
    k = lambda a, b: np.exp(-np.sum((a - b) ** 2) / 200)  # noqa: E731
    by_pairs = 1000 * (
        np.mean([[k(a, b) for b in x] for a in x])
        + np.mean([[k(a, b) for b in y] for a in y])
        - 2 * np.mean([[k(a, b) for b in y] for a in x])
    )
    assert ref == pytest.approx(by_pairs, rel=1e-9)


def test_cmmd_identity_and_checks(rng):
    x = unit(rng.normal(size=(12, 5)))
    assert abs(cmmd(x, x).value) < 1e-9
    with pytest.warns(MetricWarning, match="not L2-normalised"):
        cmmd(3 * x, x)
    with pytest.raises(UserError, match="different extractors"):
        cmmd(FeatureSet(x, CLIP_KEY), FeatureSet(x, FAKE_OTHER_KEY))
    with pytest.raises(UserError, match="at least 2 images"):
        cmmd(x[:1], x)


# ---- precision / recall --------------------------------------------------------------------------


def brute_force_pr(gen, ref, k=3):
    def radii(s):
        d = cdist(s, s)
        return np.array([np.sort(row)[k] for row in d])  # row includes the point itself at distance 0

    def inside(q, s):
        r = radii(s)
        return np.mean([any(np.linalg.norm(p - s[j]) <= r[j] for j in range(len(s))) for p in q])

    return inside(gen, ref), inside(ref, gen)


def test_precision_recall_match_brute_force(rng, monkeypatch):
    ref = rng.normal(size=(40, 4))
    gen = rng.normal(size=(35, 4)) * 0.8 + 0.6
    p, r = precision_recall(gen, ref)
    bp, br = brute_force_pr(gen, ref)
    assert (p.value, r.value) == pytest.approx((bp, br))
    assert 0 < p.value < 1 and 0 < r.value < 1
    monkeypatch.setattr(pr_module, "_BLOCK", 6)  # row blocks give the same answer
    assert [m.value for m in precision_recall(gen, ref)] == [p.value, r.value]
    assert [m.value for m in precision_recall(gen, ref, k=5)] == pytest.approx(list(brute_force_pr(gen, ref, k=5)))


@pytest.mark.parametrize("k", [3, 5])
def test_precision_recall_match_prdc(rng, k, capsys):
    """prdc (Naeem et al. 2020, the reference code of "Reliable Fidelity and Diversity Metrics") computes
    Kynkäänniemi et al.'s precision and recall with the same k-NN radii; its ``<`` and our ``<=`` only
    differ on exact ties, which continuous features do not have."""
    prdc = pytest.importorskip("prdc")
    ref = rng.normal(size=(300, 16)).astype(np.float32)
    gen = (rng.normal(size=(250, 16)) * 0.9 + 0.3).astype(np.float32)
    p, r = precision_recall(gen, ref, k=k)
    expected = prdc.compute_prdc(real_features=ref, fake_features=gen, nearest_k=k)
    assert 0.05 < expected["precision"] < 0.95 and 0.05 < expected["recall"] < 0.95  # not a trivial case
    assert p.value == pytest.approx(float(expected["precision"]), abs=1e-12)
    assert r.value == pytest.approx(float(expected["recall"]), abs=1e-12)


def test_precision_recall_toy_cases(rng):
    x = rng.normal(size=(20, 3))
    p, r = precision_recall(x, x.copy())
    assert (p.value, r.value) == (1.0, 1.0)
    p, r = precision_recall(x, x + 1000.0)
    assert (p.value, r.value) == (0.0, 0.0)
    assert p.metric == "precision" and r.metric == "recall" and p.details["k"] == 3  # plain arrays: no extractor
    p, r = precision_recall(FeatureSet(x, "efficientnet-lite0__wabc__x__float32"), x.copy())
    assert (p.metric, r.metric) == ("precision_efficientnet-lite0", "recall_efficientnet-lite0")


def test_precision_recall_bad_input(rng):
    x = rng.normal(size=(3, 2))
    with pytest.raises(UserError, match="more than 3 images"):
        precision_recall(x, rng.normal(size=(10, 2)))
    with pytest.raises(UserError, match="different extractors"):
        precision_recall(
            FeatureSet(rng.normal(size=(10, 2)), CLIP_KEY), FeatureSet(rng.normal(size=(10, 2)), FAKE_OTHER_KEY)
        )
