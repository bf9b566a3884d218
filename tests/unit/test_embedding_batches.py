"""How passages are cut into requests for remote replicas."""

from __future__ import annotations

import pytest

from apps.search.embeddings.openai_provider import split_evenly


@pytest.mark.parametrize(("n", "batch", "replicas", "sizes"), [
    (100, 32, 2, [25, 25, 25, 25]),
    (100, 32, 1, [25, 25, 25, 25]),
    (64, 32, 2, [32, 32]),
    (70, 32, 2, [18, 18, 17, 17]),
    (3, 32, 2, [2, 1]),
    (1, 32, 4, [1]),
    (5, 2, 3, [2, 2, 1]),
    (7, 2, 3, [2, 1, 1, 1, 1, 1]),
    (0, 32, 2, []),
])
def test_requests_are_even_a_multiple_of_the_replicas_and_keep_order(n, batch, replicas, sizes) -> None:
    texts = [str(i) for i in range(n)]
    batches = split_evenly(texts, batch, replicas)
    assert [len(b) for b in batches] == sizes
    assert [t for b in batches for t in b] == texts
    assert all(len(b) <= batch for b in batches)
