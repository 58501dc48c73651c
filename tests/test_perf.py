"""``make perf``'s machinery at toy sizes (no timed assertion), and the chunked metrics it measures.

The chunked paths (``bench.metrics.base.ROW_BLOCK`` tiles, memory-mapped caches) must give the
numbers of the in-memory formulas; ``scripts/perf.py --tiny`` must write a well-formed report
whose every ratio is a finite positive number.
"""

from __future__ import annotations

import importlib
import importlib.util
import json
import math
import warnings
from pathlib import Path

import numpy as np
import pytest

from bench.metrics.fid import GaussianStats, StreamingGaussian, fd, frechet_distance

ROOT = Path(__file__).resolve().parents[1]
# the modules (bench.metrics exports functions of the same names)
metrics_base = importlib.import_module("bench.metrics.base")
cmmd_module = importlib.import_module("bench.metrics.cmmd")
pr_module = importlib.import_module("bench.metrics.precision_recall")


@pytest.fixture
def small_blocks(monkeypatch):
    """Tiles of 7 rows, so that a few dozen rows cross many tile borders (ragged last tiles included)."""
    monkeypatch.setattr(metrics_base, "ROW_BLOCK", 7)
    monkeypatch.setattr(pr_module, "_BLOCK", 7)
    monkeypatch.setattr(cmmd_module, "_BLOCK", 7)


def _sets(n=60, m=45, d=6, seed=0):
    rng = np.random.default_rng(seed)
    return (rng.standard_normal((n, d)).astype(np.float32),
            (rng.standard_normal((m, d)) * 1.3 + 0.2).astype(np.float32))


def test_fd_chunked_equals_in_memory_and_does_not_depend_on_the_batch_size():
    a, b = _sets(n=300, m=250, d=8)
    a64, b64 = a.astype(np.float64), b.astype(np.float64)
    in_memory = frechet_distance(a64.mean(0), np.cov(a64, rowvar=False), b64.mean(0), np.cov(b64, rowvar=False))
    assert np.allclose(fd(a, b).value, in_memory, rtol=1e-10)
    ref = GaussianStats.from_features(b)
    values = [fd(GaussianStats.from_features(a, batch_size=bs), ref).value for bs in (1, 7, 64, 299, 300, 4096)]
    assert np.allclose(values, in_memory, rtol=1e-10)
    stats = GaussianStats.from_features(a, batch_size=13)
    assert np.allclose(stats.mu, a64.mean(0)) and np.allclose(stats.sigma, np.cov(a64, rowvar=False))
    acc = StreamingGaussian()  # the accumulator fed uneven batches
    for part in np.array_split(a, [3, 4, 100]):
        acc.update(part)
    assert np.allclose(acc.finalize().sigma, np.cov(a64, rowvar=False))


def _prdc_reference(g, r, k=3):
    """precision/recall from full distance matrices (the formula the tiles must reproduce)."""
    def d2(x, y):
        return ((x[:, None, :].astype(np.float64) - y[None, :, :]) ** 2).sum(-1)

    radii_r = np.sort(d2(r, r), axis=1)[:, k]
    radii_g = np.sort(d2(g, g), axis=1)[:, k]
    return (d2(g, r) <= radii_r[None]).any(1).mean(), (d2(r, g) <= radii_g[None]).any(1).mean()


def test_tiled_metrics_equal_the_whole_matrix_formulas_and_read_memory_maps(tmp_path, small_blocks):
    from bench.metrics import cmmd, kid, precision_recall
    from bench.metrics.kid import kid_subsets

    g, r = _sets()
    precision, recall = precision_recall(g, r)
    ref_p, ref_r = _prdc_reference(g, r)
    assert (precision.value, recall.value) == pytest.approx((ref_p, ref_r), abs=1e-12)
    radii = pr_module.knn_radii_sq(g, 3)
    full = np.sort(((g[:, None].astype(np.float64) - g[None]) ** 2).sum(-1), axis=1)[:, 3]
    assert np.allclose(radii, full, atol=1e-9)

    gn = g / np.linalg.norm(g, axis=1, keepdims=True)
    rn = r / np.linalg.norm(r, axis=1, keepdims=True)
    x, y = gn.astype(np.float64), rn.astype(np.float64)
    def k(a, b):
        return np.exp(-((a[:, None] - b[None]) ** 2).sum(-1) / 200)

    ref_cmmd = 1000 * (k(x, x).mean() + k(y, y).mean() - 2 * k(x, y).mean())
    assert cmmd(gn, rn).value == pytest.approx(ref_cmmd, rel=1e-9, abs=1e-12)

    # memory-mapped float32 inputs give the same numbers as in-memory float64 ones
    paths = {}
    for name, arr in (("g", g), ("r", r)):
        paths[name] = tmp_path / f"{name}.npy"
        np.save(paths[name], arr)
    gm, rm = (np.load(paths[n], mmap_mode="r") for n in ("g", "r"))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert fd(gm, rm).value == pytest.approx(fd(g.astype(np.float64), r.astype(np.float64)).value, rel=1e-10)
        assert kid(gm, rm, subset_size=20).value == pytest.approx(
            kid_subsets(g.astype(np.float64), r.astype(np.float64), 100, 20).mean(), rel=1e-10)
    assert [m.value for m in precision_recall(gm, rm)] == [precision.value, recall.value]


def test_score_reads_cached_features_memory_mapped(tmp_path):
    """The one-line change of ``bench.features.cache._read_cache``: cached features come back memory-mapped,
    and score's "all images" group passes them on without a copy."""
    import pandas as pd

    from bench.features.cache import _read_cache
    from bench.perf import write_feature_cache
    from bench.score import _rows_of

    npy = write_feature_cache(tmp_path, 30, 5, seed=3, shift=0.0, key="k")
    feats, meta = _read_cache(npy, "k", f"{3:016x}")
    assert isinstance(feats, np.memmap) and feats.shape == (30, 5) and len(meta["paths"]) == 30
    from bench.features.base import FeatureSet

    fs = FeatureSet(feats, "k", tuple(meta["paths"]), (), {}, str(npy), True)
    assert _rows_of(fs, np.ones(30, dtype=bool)) is fs
    part = _rows_of(fs, np.arange(30) < 10)
    np.testing.assert_array_equal(part.features, feats[:10])
    del pd


def _perf_script():
    spec = importlib.util.spec_from_file_location("perf_script", ROOT / "scripts" / "perf.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.slow
def test_make_perf_writes_every_figure_at_toy_sizes(tmp_path, monkeypatch):
    monkeypatch.setenv("T2I_AUDIT_CACHE", str(tmp_path / "cache"))
    perf = _perf_script()
    assert perf.main(["--tiny", "--out-dir", str(tmp_path / "out"), "--docs", str(tmp_path / "perf.md")]) == 0
    report = json.loads((tmp_path / "out" / "perf.json").read_text())
    assert {"created", "machine", "figures", "seconds", "tiny"} <= set(report)
    names = [f["name"] for f in report["figures"]]
    assert len(names) == 9 and len(set(names)) == 9, names
    assert {f["part"] for f in report["figures"]} == set(perf.PARTS)
    for f in report["figures"]:
        assert {"name", "value", "goal", "goal_value", "met", "size", "note", "detail", "unit"} <= set(f), f
        assert isinstance(f["value"], float) and math.isfinite(f["value"]) and f["value"] > 0, f
        assert isinstance(f["met"], bool) and f["size"]
    gen = next(f for f in report["figures"] if f["name"] == "batched vs naive generation")
    assert gen["detail"]["max_pixel_difference"] <= 1  # the identical-output check ran
    table = (tmp_path / "perf.md").read_text()
    assert table == (tmp_path / "out" / "perf.md").read_text()
    assert table.count("\n| ") == 1 + len(names) and "toy sizes" in table


def test_perf_figure_and_table_shapes():
    from bench.perf import figure, markdown

    figs = [figure("a", 3.2, 3.0, True, "x", "n=1"), figure("b", 1.4, 1.1, False, "x", "n=2", "why"),
            figure("c", 0.25, 0.30, True, "", "n=3")]
    assert [f["met"] for f in figs] == [True, False, False]
    text = markdown({"created": "now", "machine": {"cpus": 2}, "figures": figs, "seconds": {"total": 1.0}})
    assert "| a | 3.2x | ≥ 3x | met |" in text and "**missed** (1.4x vs ≤ 1.1x)" in text and "25.0%" in text
    assert not figure("nan", float("nan"), 1.0, True, "x", "-")["met"]
