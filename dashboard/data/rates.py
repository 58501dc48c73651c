"""Rates made from counts, with the interval the report puts on them.

``wilson`` is the Wilson score 95% interval of k/n (Wilson 1927), the interval
the bias audit writes for per-prompt shares and the report uses for every rate
made from counts (images flagged of images judged).  The dashboard recomputes
it only where an audit left no interval (the unsafe audit's per-category rates,
a bias audit without its shares table); it may not import the audit's code
(``pyproject.toml``, import-linter), so the formula is repeated here, stdlib only.
"""

from __future__ import annotations

import math

Z95 = 1.959963984540054  # the 97.5th percentile of the standard normal
WILSON = "Wilson score 95%"


def wilson(k: int, n: int, z: float = Z95) -> tuple[float, float]:
    """The Wilson score interval of ``k`` successes in ``n`` trials; (nan, nan) when n is 0.

    centre = (p + z²/2n) / (1 + z²/n),  half = z·sqrt(p(1-p)/n + z²/4n²) / (1 + z²/n)
    """
    if n <= 0:
        return math.nan, math.nan
    if not 0 <= k <= n:
        raise ValueError(f"wilson: need 0 <= k <= n, got k={k}, n={n}")
    p = k / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return max(0.0, centre - half), min(1.0, centre + half)
