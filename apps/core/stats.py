"""The one percentile definition: nearest rank.

The p-th percentile of n values is the value at rank ceil(p/100 · n) (1-based) of the sorted values,
rank 1 at least: always one of the observed values, never interpolated, so a latency percentile is a
latency some request really had. p95 of 1..20 is 19, p50 of 1..10 is 5, p100 is the maximum.

The request log computes the same rank in SQL (`apps.core.request_log`); tests hold both to this.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from fractions import Fraction


def rank(n: int, p: float) -> int:
    """The 1-based nearest rank of the p-th percentile among n values (0 when n is 0).

    p is read as the decimal it prints as, so float error cannot move a rank: 7 / 100 · 100 is
    7.000000000000001 in binary floating point, which would round up to rank 8.
    """
    if not 0 <= p <= 100:
        raise ValueError(f"percentile must be in [0, 100], got {p}")
    if n == 0:
        return 0
    return max(1, math.ceil(Fraction(str(p)) * n / 100))


def percentile(values: Iterable[float], p: float) -> float:
    """Nearest-rank p-th percentile (p in [0, 100]); 0.0 for no values."""
    ordered = sorted(values)
    k = rank(len(ordered), p)
    return float(ordered[k - 1]) if k else 0.0
