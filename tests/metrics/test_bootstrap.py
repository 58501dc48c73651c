"""Bootstrap intervals (bench.metrics.bootstrap and each metric's ``interval``)."""

import math

import numpy as np
import pandas as pd
import pytest

from bench.metrics import GaussianStats, cmmd, fd, kid, precision_recall
from bench.metrics.base import ScoreGroup
from bench.metrics.bootstrap import (Bootstrap, counts_of, generated_counts, n_for_target, percentile_interval,
                                     prompt_bootstrap_means, prompt_intervals, resample_indices)
from bench.metrics.cmmd import cmmd_resamples
from bench.metrics.fid import SCORER as FD_SCORER
from bench.metrics.fid import fd_resamples, weighted_stats
from bench.metrics.kid import SCORER as KID_SCORER
from bench.metrics.kid import kid_resamples
from bench.metrics.precision_recall import pr_resamples


def _feats(n, d=8, seed=0, shift=0.0):
    return np.random.default_rng(seed).normal(shift, 1.0, size=(n, d))


def test_n_for_target_formula():
    assert n_for_target(0.5, 10.0, 100) == pytest.approx(100 * (0.5 / 0.1) ** 2)
    assert n_for_target(0.1, 10.0, 100) == pytest.approx(100.0)  # already ±1%
    assert n_for_target(0.2, -10.0, 50) == pytest.approx(200.0)
    assert math.isnan(n_for_target(0.1, 0.0, 100))
    assert math.isnan(n_for_target(math.nan, 1.0, 100))


def test_percentile_interval_and_counts():
    lo, hi = percentile_interval(np.arange(1001.0))
    assert (lo, hi) == pytest.approx((25.0, 975.0))
    idx = resample_indices(np.random.default_rng(0), 7, 5)
    c = counts_of(idx, 7)
    assert c.shape == (5, 7) and (c.sum(axis=1) == 7).all()
    assert all((np.bincount(row, minlength=7) == crow).all() for row, crow in zip(idx, c))


def test_prompt_bootstrap_equals_resampling_prompts():
    rng = np.random.default_rng(1)
    prompts = [f"p{i // 3}" for i in range(30)]
    values = rng.normal(size=30)
    means = prompt_bootstrap_means(values, prompts, np.random.default_rng(5), 50)
    # the same draws, done the slow way: resample prompt ids, take all their images
    draws = resample_indices(np.random.default_rng(5), 10, 50)
    slow = [np.concatenate([values[np.array(prompts) == f"p{p}"] for p in row]).mean() for row in draws]
    assert means == pytest.approx(slow, rel=1e-12)


def test_prompt_intervals_contain_value_and_are_seeded():
    from bench.metrics.clip_score import SCORER

    rng = np.random.default_rng(0)
    samples = pd.DataFrame({"prompt_id": [f"p{i // 2}" for i in range(40)], "category": ["c1"] * 20 + ["c2"] * 20})
    img = rng.normal(size=(40, 16))
    txt = img + rng.normal(scale=1.0, size=(40, 16))
    g = ScoreGroup(stage="clip", samples=samples, gen=type("FS", (), {"features": img, "extractor": None})(),
                   text_emb=txt)
    results = SCORER.compute(g)
    a = SCORER.interval(g, results, Bootstrap(1000, 0), Bootstrap(1000, 0).rng(1))
    b = SCORER.interval(g, results, Bootstrap(1000, 0), Bootstrap(1000, 0).rng(1))
    assert len(a) == len(results) == 3  # overall + 2 categories
    for r, i, j in zip(results, a, b):
        assert i.low <= r.value <= i.high and i.low < i.high
        assert (i.low, i.high) == (j.low, j.high)
        assert "over prompts" in i.method and "1000 resamples" in i.method
        assert i.n_for_1pct == pytest.approx(n_for_target((i.high - i.low) / 2, r.value, r.n))
    c = SCORER.interval(g, results, Bootstrap(1000, 1), Bootstrap(1000, 1).rng(1))
    assert (c[0].low, c[0].high) != (a[0].low, a[0].high)
    assert prompt_intervals(g, [results[0].__class__("x", 1.0, 1)], Bootstrap(), np.random.default_rng()) == [None]


def test_weighted_stats_equal_recomputed_stats():
    x = _feats(50, 6)
    idx = resample_indices(np.random.default_rng(3), 50, 1)[0]
    w = weighted_stats(x, counts_of(idx[None], 50)[0])
    direct = GaussianStats.from_features(x[idx])
    np.testing.assert_allclose(w.mu, direct.mu, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(w.sigma, direct.sigma, rtol=1e-9, atol=1e-12)
    assert w.n == direct.n == 50


@pytest.mark.parametrize("n", [40, 200])  # N < d uses the Gram matrix, N > d the d x d one
def test_fd_resamples_equal_fd_of_resampled_rows(n):
    d = 64
    x, y = _feats(n, d, 0), _feats(300, d, 1, shift=0.3)
    ref = GaussianStats.from_features(y)
    idx = resample_indices(np.random.default_rng(2), n, 4)
    fast = fd_resamples(x, ref, counts_of(idx, n))
    with pytest.warns(Warning) if n <= d else _nullcontext():
        slow = [fd(x[i], ref).value for i in idx]
    # N > d: equal to 1e-9.  N <= d: the direct FD takes sqrt of the d - N + 1 zero eigenvalues of a singular d x d
    # matrix, which rounding leaves at ~1e-14 (sqrt ~1e-7 each); the Gram route has none of them.
    assert fast == pytest.approx(slow, rel=1e-9 if n > d else 1e-7)


class _nullcontext:
    def __enter__(self):
        return self

    def __exit__(self, *a):
        return False


def test_fd_interval_contains_value_narrows_with_n_and_is_seeded():
    d = 8
    y = _feats(2000, d, 9, shift=0.5)
    ref = GaussianStats.from_features(y)
    widths = []
    for n in (50, 800):
        x = _feats(n, d, 4)
        g = ScoreGroup(stage="features", samples=pd.DataFrame(index=range(n)), gen=x, reference_stats=ref)
        results = FD_SCORER.compute(g)
        boot = Bootstrap(300, 0)
        (iv,) = FD_SCORER.interval(g, results, boot, boot.rng(0))
        (again,) = FD_SCORER.interval(g, results, boot, boot.rng(0))
        assert iv.low <= results[0].value <= iv.high
        assert (iv.low, iv.high) == (again.low, again.high)
        widths.append(iv.high - iv.low)
        assert "generated images" in iv.method and "seed 0" in iv.method
    assert widths[1] < widths[0] / 2


def test_fd_caps_resamples_when_n_exceeds_d():
    x, y = _feats(30, 4, 0), _feats(30, 4, 1)
    g = ScoreGroup(stage="features", samples=pd.DataFrame(index=range(30)), gen=x,
                   reference_stats=GaussianStats.from_features(y))
    boot = Bootstrap(1000, 0)
    (iv,) = FD_SCORER.interval(g, FD_SCORER.compute(g), boot, boot.rng(0))
    assert "200 resamples" in iv.method and "capped from 1000" in iv.method


def test_kid_cmmd_pr_resamples_match_recomputation():
    x, y = _feats(30, 8, 0), _feats(40, 8, 1, shift=0.2)
    idx = resample_indices(np.random.default_rng(0), 30, 3)
    c = counts_of(idx, 30)
    xn = x / np.linalg.norm(x, axis=1, keepdims=True)
    yn = y / np.linalg.norm(y, axis=1, keepdims=True)
    assert cmmd_resamples(xn, yn, c) == pytest.approx([cmmd(xn[i], yn).value for i in idx], rel=1e-9)
    # KID on the whole sets (subsets = all rows) with no repeated image equals the full-set resample statistic
    ident = np.ones((1, 30))
    assert kid_resamples(x, y, ident)[0] == pytest.approx(_full_mmd(x, y), rel=1e-9)
    y30 = y[:30]  # equal sizes: KID's one subset of all rows is the full-set statistic
    assert kid_resamples(x, y30, ident)[0] == pytest.approx(kid(x, y30, num_subsets=1, subset_size=30).value, rel=1e-9)
    precision, recall = pr_resamples(x, y, c, k=3)
    assert precision == pytest.approx([precision_recall(x[i], y)[0].value for i in idx])
    p1, r1 = pr_resamples(x, y, ident, k=3)
    pr = precision_recall(x, y)
    assert (p1[0], r1[0]) == pytest.approx((pr[0].value, pr[1].value))


def _full_mmd(x, y):
    from bench.metrics.kid import polynomial_kernel

    kxx, kyy, kxy = polynomial_kernel(x, x), polynomial_kernel(y, y), polynomial_kernel(x, y)
    n, m = len(x), len(y)
    return ((kxx.sum() - np.trace(kxx)) / (n * (n - 1)) + (kyy.sum() - np.trace(kyy)) / (m * (m - 1))
            - 2 * kxy.mean())


def test_kid_interval_contains_value():
    x, y = _feats(60, 8, 0, shift=0.3), _feats(60, 8, 1)
    g = ScoreGroup(stage="features", samples=pd.DataFrame(index=range(60)), gen=x, reference=y,
                   options={"kid_subset_size": 1000})
    with pytest.warns(Warning):
        results = KID_SCORER.compute(g)
    boot = Bootstrap(1000, 0)
    (iv,) = KID_SCORER.interval(g, results, boot, boot.rng(0))
    assert iv.low <= results[0].value <= iv.high
    assert "pairs of copies left out" in iv.method


def test_generated_counts_sum_to_n():
    c = generated_counts(np.random.default_rng(0), 13, 20)
    assert c.shape == (20, 13) and (c.sum(axis=1) == 13).all()
