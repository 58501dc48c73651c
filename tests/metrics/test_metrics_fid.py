"""FID / FD: agreement with pytorch-fid, streaming statistics, naming, reference .npz files, bad input."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from metrics_helpers import FAKE_INCEPTION_KEY, FAKE_OTHER_KEY

from bench.errors import UserError
from bench.features.base import FeatureSet
from bench.metrics import GaussianStats, MetricWarning, StreamingGaussian, fd, fd_metric_name, frechet_distance


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(0)


pytorch_fid = pytest.importorskip("pytorch_fid.fid_score")


def two_sets(rng, n=300, d=12):
    mix = rng.normal(size=(d, d))
    a = rng.normal(size=(n, d)) @ mix + 0.5
    b = rng.normal(size=(n + 17, d)) @ (mix + 0.3 * rng.normal(size=(d, d))) + 0.8
    return a.astype(np.float32), b.astype(np.float32)


def test_agrees_with_pytorch_fid(rng):
    a, b = two_sets(rng)
    # pytorch-fid's statistics (np.mean, np.cov) and distance, on the same float32 features.
    mu1, s1 = np.mean(a, axis=0), np.cov(a, rowvar=False)
    mu2, s2 = np.mean(b, axis=0), np.cov(b, rowvar=False)
    ref = pytorch_fid.calculate_frechet_distance(mu1, s1, mu2, s2)
    ours = fd(a, b).value
    assert ours == pytest.approx(ref, rel=1e-6)
    # On identical float64 statistics the two agree to rounding: pytorch-fid takes scipy's sqrtm of
    # S1 S2, we take eigh of S1^(1/2) S2 S1^(1/2); both are stable, they differ by ~1e-12 relative.
    # (pytorch-fid keeps np.mean of float32 features in float32, which is why the line above allows 1e-6.)
    a64, b64 = a.astype(np.float64), b.astype(np.float64)
    mu1, mu2 = a64.mean(axis=0), b64.mean(axis=0)
    ref64 = pytorch_fid.calculate_frechet_distance(mu1, s1, mu2, s2)
    assert frechet_distance(mu1, s1, mu2, s2) == pytest.approx(ref64, rel=1e-10)
    assert fd(a64, b64).value == pytest.approx(ref64, rel=1e-9)
    stats = GaussianStats.from_features(a)
    np.testing.assert_allclose(stats.mu, mu1, rtol=1e-10)
    np.testing.assert_allclose(stats.sigma, s1, rtol=1e-9, atol=1e-12)


def test_agrees_with_torchmetrics_fid_core(rng):
    torch = pytest.importorskip("torch")
    from torchmetrics.image.fid import _compute_fid

    a, b = two_sets(rng)
    ga, gb = GaussianStats.from_features(a), GaussianStats.from_features(b)
    t = lambda x: torch.from_numpy(x)  # noqa: E731
    ref = float(_compute_fid(t(ga.mu), t(ga.sigma), t(gb.mu), t(gb.sigma)))
    assert fd(ga, gb).value == pytest.approx(ref, rel=1e-6)


def test_fd_of_a_set_with_itself_is_zero(rng):
    a, _ = two_sets(rng)
    stats = GaussianStats.from_features(a)
    assert abs(fd(a, a).value) < 1e-9 * np.trace(stats.sigma)


def test_batch_size_and_order_do_not_change_the_result(rng):
    a, b = two_sets(rng)
    ref_stats = GaussianStats.from_features(b)
    base = fd(GaussianStats.from_features(a, batch_size=len(a)), ref_stats).value
    for batch in (1, 7, 64):
        assert fd(GaussianStats.from_features(a, batch_size=batch), ref_stats).value == pytest.approx(base, rel=1e-10)
    shuffled = a[rng.permutation(len(a))]
    assert fd(shuffled, b).value == pytest.approx(base, rel=1e-10)


def test_streaming_matches_numpy(rng):
    a, _ = two_sets(rng, n=50, d=5)
    acc = StreamingGaussian()
    for chunk in np.array_split(a, 6):
        acc.update(chunk)
    stats = acc.finalize()
    np.testing.assert_allclose(stats.sigma, np.cov(a.astype(np.float64), rowvar=False), rtol=1e-10, atol=1e-12)
    assert stats.n == 50


def test_naming_fid_only_for_inception_pool3(rng):
    a, b = two_sets(rng, n=40, d=4)
    assert fd_metric_name(FAKE_INCEPTION_KEY) == "FID"
    assert fd_metric_name(FAKE_OTHER_KEY) == "FD_efficientnet-lite0"
    assert fd_metric_name(None) == "FD"
    res = fd(FeatureSet(a, FAKE_OTHER_KEY), FeatureSet(b, FAKE_OTHER_KEY))
    assert res.metric == "FD_efficientnet-lite0"
    assert res.extractor == FAKE_OTHER_KEY and res.n == 40 and res.n_ref == 57
    assert res.details["resize"] == "clean-bicubic-224"
    row = res.to_row()
    assert row["metric"] == "FD_efficientnet-lite0" and row["n"] == 40
    assert fd(a, b, extractor=FAKE_INCEPTION_KEY).metric == "FID"


def test_fewer_than_two_images_is_a_user_error(rng):
    a, b = two_sets(rng, n=40, d=4)
    with pytest.raises(UserError, match="at least 2 images"):
        fd(a[:1], b)
    with pytest.raises(UserError, match="at least 2 images"):
        StreamingGaussian().finalize()


def test_n_not_above_d_warns_with_n_and_d(rng):
    a, b = two_sets(rng, n=40, d=8)
    with pytest.warns(MetricWarning, match=r"N=6 samples <= d=8"):
        GaussianStats.from_features(a[:6])


def test_different_extractors_are_refused(rng):
    a, b = two_sets(rng, n=40, d=4)
    with pytest.raises(UserError, match="different extractors") as exc:
        fd(FeatureSet(a, FAKE_INCEPTION_KEY), FeatureSet(b, FAKE_OTHER_KEY))
    assert "\n" not in str(exc.value)
    with pytest.raises(UserError, match="dimensions differ"):
        fd(a, b[:, :3])


def test_npz_round_trip_and_pytorch_fid_interop(rng, tmp_path):
    a, b = two_sets(rng)
    ga, gb = GaussianStats.from_features(FeatureSet(a, FAKE_INCEPTION_KEY)), GaussianStats.from_features(b)
    path = ga.save_npz(tmp_path / "ref.npz")
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".tmp-")]
    loaded = GaussianStats.load_npz(path, expect_extractor=FAKE_INCEPTION_KEY)
    assert loaded.extractor == FAKE_INCEPTION_KEY and loaded.n == len(a)
    np.testing.assert_array_equal(loaded.sigma, ga.sigma)
    # pytorch-fid reads our file (it only looks at mu and sigma) and gets the same FD.
    mu, sigma = pytorch_fid.compute_statistics_of_path(str(path), None, 1, 2048, "cpu")
    assert pytorch_fid.calculate_frechet_distance(mu, sigma, gb.mu, gb.sigma) == pytest.approx(
        fd(loaded, gb).value, rel=1e-10
    )


def test_trace_sqrt_product_is_exact_where_the_answer_is_known(rng):
    from bench.metrics.fid import trace_sqrt_product

    # Commuting (diagonal) covariances: Tr((D1 D2)^(1/2)) = sum sqrt(d1 d2).
    d1, d2 = rng.uniform(0.1, 5.0, 20), rng.uniform(0.1, 5.0, 20)
    assert trace_sqrt_product(np.diag(d1), np.diag(d2)) == pytest.approx(np.sqrt(d1 * d2).sum(), rel=1e-13)
    # A rotation applied to both changes nothing; S with itself gives Tr(S).
    q, _ = np.linalg.qr(rng.normal(size=(20, 20)))
    s1, s2 = q @ np.diag(d1) @ q.T, q @ np.diag(d2) @ q.T
    assert trace_sqrt_product(s1, s2) == pytest.approx(np.sqrt(d1 * d2).sum(), rel=1e-12)
    assert trace_sqrt_product(s1, s1) == pytest.approx(np.trace(s1), rel=1e-12)
    # Singular covariances (rank 5 of 20): no NaN, and the value of the rank-5 problem.
    low = rng.normal(size=(20, 5))
    sing = low @ low.T
    assert np.isfinite(trace_sqrt_product(sing, s2))
    # sqrt amplifies the rounding of the 15 zero eigenvalues (~1e-14 -> ~1e-7 each), hence 1e-6.
    assert trace_sqrt_product(sing, sing) == pytest.approx(np.trace(sing), rel=1e-6)


def test_reference_from_another_extractor_is_refused(rng, tmp_path):
    a, _ = two_sets(rng)
    path = GaussianStats.from_features(FeatureSet(a, FAKE_OTHER_KEY)).save_npz(tmp_path / "ref.npz")
    with pytest.raises(UserError, match="made with extractor efficientnet-lite0") as exc:
        GaussianStats.load_npz(path, expect_extractor=FAKE_INCEPTION_KEY)
    assert "\n" not in str(exc.value)
    # Also refused at comparison time when loaded without an expectation.
    loaded = GaussianStats.load_npz(path)
    with pytest.raises(UserError, match="different extractors"):
        fd(FeatureSet(a, FAKE_INCEPTION_KEY), loaded)


def test_foreign_npz_without_extractor_loads_with_a_warning(rng, tmp_path):
    a, b = two_sets(rng)
    path = tmp_path / "pytorch_fid_stats.npz"
    np.savez(path, mu=np.mean(a, axis=0), sigma=np.cov(a, rowvar=False))  # what pytorch-fid --save-stats writes
    with pytest.warns(MetricWarning, match="does not record its extractor"):
        loaded = GaussianStats.load_npz(path, expect_extractor=FAKE_INCEPTION_KEY)
    assert loaded.extractor is None and loaded.n is None
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        res = fd(FeatureSet(b, FAKE_INCEPTION_KEY), loaded)
    assert res.metric == "FID"


def test_bad_npz_is_a_user_error(tmp_path):
    (tmp_path / "x.npz").write_bytes(b"not a zip")
    with pytest.raises(UserError):
        GaussianStats.load_npz(tmp_path / "x.npz")
    np.savez(tmp_path / "y.npz", mean=np.zeros(3))
    with pytest.raises(UserError, match="needs arrays 'mu' and 'sigma'"):
        GaussianStats.load_npz(tmp_path / "y.npz")
