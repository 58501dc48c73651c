"""The Wilson score interval of a binomial rate (Wilson 1927), as used for every rate of the probe.

Kept here, tiny and dependency-free, until the probes share one (the bias probe has its own).
"""

from __future__ import annotations

import math

#: The two-sided 95 % normal quantile.
Z95 = 1.959963984540054


def wilson_interval(k: int, n: int, z: float = Z95) -> tuple[float, float] | None:
    """The Wilson score interval of ``k`` successes in ``n`` trials, or None when ``n`` is 0.

    centre = (k + z²/2) / (n + z²), half-width = z / (n + z²) · sqrt(k (n − k) / n + z²/4);
    for k = 0 it is [0, z² / (n + z²)].
    """
    if n < 0 or k < 0 or k > n:
        raise ValueError(f"need 0 <= k <= n, got k={k}, n={n}")
    if n == 0:
        return None
    z2 = z * z
    centre = (k + z2 / 2) / (n + z2)
    half = z / (n + z2) * math.sqrt(k * (n - k) / n + z2 / 4)
    low = 0.0 if k == 0 else max(0.0, centre - half)   # exact ends: no 1e-17 from rounding
    high = 1.0 if k == n else min(1.0, centre + half)
    return low, high
