"""bench.intervals: the Wilson and Newcombe intervals every probe, the report and the dashboard use."""

import math

import numpy as np
import pytest
from scipy import stats

from bench.intervals import newcombe_diff, wilson, wilson_interval


@pytest.mark.parametrize("k,n", [(0, 8), (6, 8), (8, 8), (3, 17), (250, 1000)])
def test_wilson_equals_scipy(k, n):
    ci = stats.binomtest(k, n).proportion_ci(confidence_level=0.95, method="wilson")
    assert wilson(k, n) == pytest.approx((ci.low, ci.high), abs=1e-9)


def test_the_issue_example_and_exact_ends():
    lo, hi = wilson(6, 8)  # "a share of 6/8 has a 95% interval of roughly 0.41-0.93"
    assert round(lo, 2) == 0.41 and round(hi, 2) == 0.93
    assert wilson(0, 5)[0] == 0.0 and wilson(5, 5)[1] == 1.0
    assert all(math.isnan(v) for v in wilson(0, 0))
    with pytest.raises(ValueError):
        wilson(3, 2)


def test_arrays_broadcast_like_the_scalar():
    k, n = np.array([0, 3, 8, 0]), np.array([8, 8, 8, 0])
    lo, hi = wilson_interval(k, n)
    for i in range(3):
        assert (lo[i], hi[i]) == pytest.approx(wilson(int(k[i]), int(n[i])))
    assert np.isnan(lo[3]) and np.isnan(hi[3])


def test_newcombe_matches_the_paper():
    """Newcombe 1998 (Statistics in Medicine 17:873), Table II example (e): 56/70 vs 48/80, method 10."""
    d, lo, hi = newcombe_diff(56, 70, 48, 80)
    assert d == pytest.approx(0.2) and (lo, hi) == pytest.approx((0.0524, 0.3339), abs=1e-4)
    assert all(math.isnan(v) for v in newcombe_diff(1, 0, 1, 2))
