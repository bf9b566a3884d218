"""How passages are cut into requests for remote replicas."""

from __future__ import annotations

import pytest

from apps.search.embeddings.openai_provider import split_evenly


@pytest.mark.parametrize(("n", "batch", "replicas", "count"), [
    (100, 32, 2, 4),
    (100, 32, 1, 4),
    (64, 32, 2, 2),
    (70, 32, 2, 4),
    (3, 32, 2, 2),
    (1, 32, 4, 1),  # fewer texts than replicas: no empty requests
    (5, 2, 3, 3),
    (7, 2, 3, 6),
    (0, 32, 2, 0),
])
def test_requests_are_even_a_multiple_of_the_replicas_and_keep_order(n, batch, replicas, count) -> None:
    texts = [str(i) for i in range(n)]
    batches = split_evenly(texts, batch, replicas)
    sizes = [len(b) for b in batches]
    assert len(batches) == count
    assert [t for b in batches for t in b] == texts
    assert all(0 < size <= batch for size in sizes)
    assert not sizes or max(sizes) - min(sizes) <= 1
