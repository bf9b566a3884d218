"""Per-process caches are bounded by the bytes they hold, not by their number of entries.

Measured with tracemalloc (what the process really keeps), not with the caches' own count: one
entry can be a word or a 10,000-character query, one search result a few hits or a hundred chunks.
"""

from __future__ import annotations

import gc
import random
import tracemalloc
from collections.abc import Iterator
from contextlib import contextmanager

from apps.search.cache import LocalBackend
from apps.text.analyzer import Analyzer

MIB = 1024 * 1024
BUDGET = 2 * MIB
SLACK = 1.15  # the caches' dict tables grow in steps


@contextmanager
def retained() -> Iterator[list[int]]:
    """Bytes allocated inside the block and still alive after it."""
    gc.collect()
    tracemalloc.start()
    out: list[int] = []
    try:
        before = tracemalloc.get_traced_memory()[0]
        yield out
        gc.collect()
        out.append(tracemalloc.get_traced_memory()[0] - before)
    finally:
        tracemalloc.stop()


def korean(seed: int, chars: int) -> str:
    """Distinct Hangul text in words of three syllables."""
    rng = random.Random(seed)
    return "".join(" " if i % 4 == 3 else chr(rng.randrange(0xAC00, 0xD7A4)) for i in range(chars))


def result(seed: int, chars: int) -> str:
    """A cached search result's size and kind (JSON with Korean text), distinct per seed."""
    return f'{{"seed": {seed}, "text": "{"검색 결과 " * (chars // 6)}"}}'


def test_analyser_cache_stays_under_its_byte_budget() -> None:
    analyzer = Analyzer("bigram", cache_bytes=BUDGET)
    with retained() as size:
        for i in range(400):  # ~16 KB of tokens each: 6 MB if nothing were evicted
            analyzer.tokens(korean(i, 300))
    assert BUDGET / 2 < size[0] <= BUDGET * SLACK
    assert BUDGET / 2 < analyzer.cached_bytes <= BUDGET
    recent, oldest = korean(399, 300), korean(0, 300)
    assert analyzer.tokens(recent) is analyzer.tokens(recent)  # still cached
    first = analyzer.tokens(oldest)
    assert first == analyzer.tokens(oldest) and first is not Analyzer("bigram").tokens(oldest)
    analyzer.clear()
    assert analyzer.cached_bytes == 0


def test_analyser_does_not_cache_a_text_over_its_share() -> None:
    analyzer = Analyzer("bigram", cache_bytes=BUDGET)
    query = korean(1, 10_000)  # ~0.85 MB of tokens, over 1/64 of the budget
    assert analyzer.tokens(query) is not analyzer.tokens(query)
    assert analyzer.tokens(query) == analyzer.tokens(query) and analyzer.cached_bytes == 0
    short = korean(2, 50)
    assert analyzer.tokens(short) is analyzer.tokens(short)


async def test_search_cache_stays_under_its_byte_budget() -> None:
    backend = LocalBackend(BUDGET)
    with retained() as size:
        for i in range(300):  # ~30 KB each: 9 MB if nothing were evicted
            await backend.set(f"{i:064x}", result(i, 15_000), ttl_s=60)
    assert BUDGET / 2 < size[0] <= BUDGET * SLACK
    assert BUDGET / 2 < backend.cached_bytes <= BUDGET
    assert await backend.get(f"{299:064x}") == result(299, 15_000)
    assert await backend.get(f"{0:064x}") is None  # the least recently used went first
    await backend.set("huge", result(3, 200_000), ttl_s=60)  # over 1/16 of the budget: not kept
    assert await backend.get("huge") is None
    await backend.clear()
    assert backend.cached_bytes == 0 and await backend.get(f"{299:064x}") is None
