"""KID against torch-fidelity and torchmetrics; Inception Score against torch-fidelity and torchmetrics."""

from __future__ import annotations

import numpy as np
import pytest
from metrics_helpers import FAKE_INCEPTION_KEY, FAKE_OTHER_KEY

from bench.errors import UserError
from bench.features.base import FeatureSet
from bench.metrics import MetricWarning, inception_score, kid, polynomial_mmd2


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(0)


torch = pytest.importorskip("torch")


def feats(rng, n, d=8, shift=0.0):
    return (np.abs(rng.normal(size=(n, d))) + shift).astype(np.float32)  # pool3-like: non-negative


# ---- KID -------------------------------------------------------------------------------------------


def test_kid_matches_torch_fidelity_with_the_same_subsets(rng):
    from torch_fidelity.metric_kid import kid_features_to_metric

    x, y = feats(rng, 80), feats(rng, 90, shift=0.2)
    kwargs = dict(
        kid_subsets=5, kid_subset_size=50, kid_degree=3, kid_gamma=None, kid_coef0=1, rng_seed=2020, verbose=False
    )
    # torch-fidelity computes in the features' dtype: float64 in, the same formula as ours.
    ref = kid_features_to_metric(
        torch.from_numpy(x.astype(np.float64)), torch.from_numpy(y.astype(np.float64)), **kwargs
    )
    ours = kid(x, y, num_subsets=5, subset_size=50)
    assert ours.value == pytest.approx(ref["kernel_inception_distance_mean"], rel=1e-9)
    assert ours.details["std"] == pytest.approx(ref["kernel_inception_distance_std"], rel=1e-9)
    # On float32 tensors torch-fidelity's kernels are float32: same subsets, ~1e-7 rounding.
    ref32 = kid_features_to_metric(torch.from_numpy(x), torch.from_numpy(y), **kwargs)
    assert ours.value == pytest.approx(ref32["kernel_inception_distance_mean"], rel=1e-5)
    assert ours.metric == "KID" and ours.n == 80 and ours.n_ref == 90


def test_kid_single_subset_matches_torchmetrics_core(rng):
    from torchmetrics.image.kid import poly_mmd

    x, y = feats(rng, 40, d=6).astype(np.float64), feats(rng, 40, d=6, shift=0.1).astype(np.float64)
    # torchmetrics' poly_mmd(f_real, f_fake) is symmetric in its two sets.
    ref = float(poly_mmd(torch.from_numpy(y), torch.from_numpy(x)))
    assert polynomial_mmd2(x, y) == pytest.approx(ref, rel=1e-10)


def test_kid_formula_by_hand(rng):
    x, y = feats(rng, 6, d=3), feats(rng, 6, d=3, shift=0.5)
    x64, y64 = x.astype(np.float64), y.astype(np.float64)
    k = lambda a, b: (a @ b / 3 + 1) ** 3  # noqa: E731
    m = 6
    xx = sum(k(x64[i], x64[j]) for i in range(m) for j in range(m) if i != j) / (m * (m - 1))
    yy = sum(k(y64[i], y64[j]) for i in range(m) for j in range(m) if i != j) / (m * (m - 1))
    xy = sum(k(x64[i], y64[j]) for i in range(m) for j in range(m)) / (m * m)
    assert polynomial_mmd2(x64, y64) == pytest.approx(xx + yy - 2 * xy, rel=1e-12)


def test_kid_subset_larger_than_n_is_clamped_and_said(rng):
    x, y = feats(rng, 30), feats(rng, 45)
    with pytest.warns(MetricWarning, match="subset size 1000 > number of samples .*using subsets of 30"):
        res = kid(x, y, num_subsets=3)
    assert res.details["subset_size"] == 30 and res.details["subset_size_clamped"] is True
    assert res.value == pytest.approx(kid(x, y, num_subsets=3, subset_size=30).value, rel=1e-12)


def test_kid_same_distribution_is_near_zero_and_seeded(rng):
    x, y = feats(rng, 200), feats(rng, 200)
    a = kid(x, y, num_subsets=10, subset_size=100)
    assert abs(a.value) < 0.05
    assert a.value == kid(x, y, num_subsets=10, subset_size=100).value  # fixed seed: deterministic
    assert kid(x, feats(rng, 200, shift=1.0), num_subsets=10, subset_size=100).value > 10 * abs(a.value)


def test_kid_bad_input(rng):
    x = feats(rng, 20)
    with pytest.raises(UserError, match="at least 2 images"):
        kid(x[:1], x)
    with pytest.raises(UserError, match="different extractors"):
        kid(FeatureSet(x, FAKE_INCEPTION_KEY), FeatureSet(x, FAKE_OTHER_KEY), subset_size=10)
    assert (
        kid(FeatureSet(x, FAKE_OTHER_KEY), FeatureSet(x, FAKE_OTHER_KEY), num_subsets=2, subset_size=10).metric
        == "KID_efficientnet-lite0"
    )


# ---- Inception Score -----------------------------------------------------------------------------


def logits(rng, n=60, classes=1008):
    return (rng.normal(size=(n, classes)) * 3).astype(np.float32)


def test_is_matches_torch_fidelity(rng):
    from torch_fidelity.metric_isc import isc_features_to_metric

    z = logits(rng, n=57)  # not a multiple of 10: uneven splits
    ref = isc_features_to_metric(torch.from_numpy(z), splits=10, shuffle=False)
    ours = inception_score(z)
    assert ours.value == pytest.approx(ref["inception_score_mean"], rel=1e-10)
    assert ours.details["std"] == pytest.approx(ref["inception_score_std"], rel=1e-8)


@pytest.mark.filterwarnings("ignore:Metric `InceptionScore` will save")
def test_is_matches_torchmetrics_formula(rng):
    from torchmetrics.image.inception import InceptionScore

    z = torch.from_numpy(logits(rng, n=60).astype(np.float64))
    metric = InceptionScore(feature=torch.nn.Identity(), splits=10)  # logits in, logits "features" out
    metric.update(z)
    torch.manual_seed(123)
    tm_mean, tm_std = metric.compute()
    torch.manual_seed(123)
    perm = torch.randperm(60)  # the permutation torchmetrics applied
    ours = inception_score(z[perm].numpy(), splits=10)
    assert ours.value == pytest.approx(float(tm_mean), rel=1e-10)
    # torchmetrics reports the unbiased std (ddof=1); ours is ddof=0 like the paper's code.
    assert ours.details["std"] * np.sqrt(10 / 9) == pytest.approx(float(tm_std), rel=1e-8)


def test_is_known_values():
    uniform = np.zeros((20, 1008), np.float32)
    assert inception_score(uniform, splits=2).value == pytest.approx(1.0)
    # Confident and spread over 5 classes per split: IS = 5.
    confident = np.full((20, 1008), -1e4, np.float32)
    for i in range(20):
        confident[i, i % 5] = 0.0
    assert inception_score(confident, splits=2).value == pytest.approx(5.0, rel=1e-6)


def test_is_bad_input(rng):
    with pytest.raises(UserError, match="at least 2 images"):
        inception_score(logits(rng, n=1))
    with pytest.raises(UserError, match="needs at least 10 images"):
        inception_score(logits(rng, n=5))
