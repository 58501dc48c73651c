"""The Wilson score interval of a binomial rate, as the probe reports it (``bench.intervals``).

The probe writes None, not NaN, for a rate over no judged image (JSON has no NaN).
"""

from __future__ import annotations

from bench.intervals import Z95, wilson


def wilson_interval(k: int, n: int, z: float = Z95) -> tuple[float, float] | None:
    """The Wilson score interval of ``k`` successes in ``n`` trials, or None when ``n`` is 0."""
    if n < 0 or k < 0 or k > n:
        raise ValueError(f"need 0 <= k <= n, got k={k}, n={n}")
    return None if n == 0 else wilson(k, n, z)
