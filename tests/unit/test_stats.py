"""The one percentile definition (nearest rank) against values worked out by hand."""

from __future__ import annotations

import random

import pytest

from apps.core.stats import percentile, rank


@pytest.mark.parametrize(("values", "p", "expected"), [
    (range(1, 21), 95, 19),   # rank ceil(0.95 · 20) = 19, not the maximum
    (range(1, 21), 50, 10),
    (range(1, 11), 50, 5),
    (range(1, 11), 90, 9),
    (range(1, 11), 91, 10),
    (range(1, 101), 99, 99),
    (range(1, 101), 7, 7),    # 7 / 100 · 100 is 7.000000000000001 in floats: still rank 7
    (range(1, 1001), 99.9, 999),
    (range(1, 101), 100, 100),
    (range(1, 101), 0, 1),
    ([42.5], 50, 42.5),
    ([42.5], 99, 42.5),
    ([3, 1, 2, 2], 50, 2),    # unsorted input, ties
    ([], 95, 0.0),
])
def test_known_values(values, p: float, expected: float) -> None:
    assert percentile(list(values), p) == expected


def test_rank_and_percentile_agree_and_are_observed_values() -> None:
    rng = random.Random(7)
    for n in (1, 2, 3, 19, 20, 21, 99, 100, 101, 1000):
        values = [round(rng.uniform(0, 500), 3) for _ in range(n)]
        for p in (1, 50, 95, 99, 100):
            k = rank(n, p)
            assert k * 100 >= p * n > (k - 1) * 100  # the smallest rank covering p % of the values
            assert percentile(values, p) == sorted(values)[k - 1]
    assert rank(0, 95) == 0


def test_out_of_range_percentile_is_refused() -> None:
    with pytest.raises(ValueError):
        percentile([1.0], 101)
    with pytest.raises(ValueError):
        rank(10, -1)
