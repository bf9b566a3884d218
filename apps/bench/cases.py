"""`dtrag bench cases`: history questions' judgements become cases, then the test questions are searched
with and without them.

- baseline: the strategy alone;
- cold: case memory on, the bank empty (must equal the baseline);
- with_cases: the history's judgements imported (`dtrag cases import`), the selector trained;
- shown_only: each history question searched with case memory on, and feedback marking only the relevant
  passages its own top 10 showed (the way a person's thumbs arrive), the selector trained;
- noisy: as with_cases, but for the given share of history questions the judgement is one wrong passage
  from its own top 10;
- ceiling: with_cases's close cases in the hands of a selector that never errs, and (`hindsight_ndcg@10`)
  in those of the selector fitted on the test questions' own outcomes (apps/bench/case_ceilings.py).

Every mode starts from an empty bank of the corpus's collection (the bench's database is its own), and
its selector is trained on that mode's bank alone. The selector explores as it does when served
(CASES_EXPLORATION; `CASES_EXPLORATION=0` measures its greedy choices alone), from seeded draws.
"""

from __future__ import annotations

import random
import time
import uuid
from typing import Any

import mmh3
import numpy as np

from apps.bench.beir import BeirDataset
from apps.bench.case_ceilings import ceiling, hindsight
from apps.bench.metrics import Run, evaluate
from apps.bench.retrieval import DOC_DEPTH, doc_scores, ingest_dataset
from apps.core.config import Settings
from apps.core.migrations import upgrade
from apps.core.stats import percentile
from apps.core.visibility import DEFAULT_COLLECTION
from apps.runtime import Runtime, build_runtime
from apps.search.cases.types import CaseQuery

CHUNK_DEPTH = DOC_DEPTH + DOC_DEPTH // 2  # as the retrieval bench: multi-chunk documents still yield 100


def split_history(dataset: BeirDataset, fraction: float, seed: int) -> tuple[list[str], list[str]]:
    """(history, test) query ids: a seeded shuffle, the first `fraction` the history."""
    ids = sorted(dataset.queries)
    random.Random(seed).shuffle(ids)
    cut = round(len(ids) * fraction)
    return sorted(ids[:cut]), sorted(ids[cut:])


def _request_id(nonce: str, mode: str, qid: str) -> str:
    return f"bench-{nonce}-{mode}-{qid}"[:64]


async def _search_all(runtime: Runtime, queries: dict[str, str], strategy: str, nonce: str, mode: str,
                      cases: bool) -> tuple[Run, dict[str, Any]]:
    run: Run = {}
    latencies: list[float] = []
    leg: list[float] = []  # the case leg alone (with the query's embedding when no dense leg made it)
    changed = 0
    for qid, text in queries.items():
        memory = CaseQuery(_request_id(nonce, mode, qid), "search") if cases else None
        start = time.perf_counter()
        result = await runtime.search.search(text, top_k=CHUNK_DEPTH, strategy=strategy, cases=memory)
        latencies.append((time.perf_counter() - start) * 1000)
        leg.append(result.timings_ms.get("cases", 0.0))
        changed += bool(result.cases and result.cases["changed"])
        run[qid] = doc_scores(result.hits)
    timing = {"p50_ms": round(percentile(latencies, 50), 2), "p95_ms": round(percentile(latencies, 95), 2)}
    if not cases:
        return run, timing
    return run, {**timing, "cases_leg_p50_ms": round(percentile(leg, 50), 2),
                 "cases_leg_p95_ms": round(percentile(leg, 95), 2), "changed": changed}


async def _plain_top(runtime: Runtime, text: str, strategy: str, k: int = 10) -> list[tuple[int, str]]:
    result = await runtime.search.search(text, top_k=k, strategy=strategy)
    return [(h.chunk_id, h.external_id or h.doc_id) for h in result.hits]


def _scores(qrels: dict[str, dict[str, int]], run: Run, timing: dict[str, Any]) -> dict[str, Any]:
    metrics = evaluate(qrels, run)
    return {"ndcg@10": metrics["ndcg@10"], "recall@100": metrics["recall@100"], **timing}


async def _trained(runtime: Runtime) -> dict[str, Any]:
    report = await runtime.cases.train()
    return {name: {k: c[k] for k in ("cases", "examples", "positives", "selector")}
            for name, c in report["collections"].items()}


async def bench_cases(history: BeirDataset, test: BeirDataset, history_ids: list[str], test_ids: list[str],
                      settings: Settings, strategy: str | None = None, noise: float = 0.2,
                      seed: int = 0) -> dict[str, Any]:
    upgrade(settings.database_url)
    nonce = uuid.uuid4().hex[:8]
    # One batch update per mode, after its bank is complete: none in the background while it fills.
    settings = settings.model_copy(update={"cases_train_every": 0})
    async with build_runtime(settings) as runtime:
        # The selector explores as served (CASES_EXPLORATION), with draws seeded so a run repeats.
        runtime.cases.selector.rng = np.random.default_rng(seed)
        strategy = runtime.search.resolve(strategy).name
        ingest = await ingest_dataset(runtime, test)
        await runtime.warm_up()
        queries = {q: test.queries[q] for q in test_ids}
        qrels = {q: test.qrels[q] for q in test_ids}
        past = {q: history.queries[q] for q in history_ids}
        judged = {q: history.qrels[q] for q in history_ids}
        for text in list(queries.values())[:5]:  # warm caches, as the retrieval bench does
            await runtime.search.search(text, top_k=10, strategy=strategy)
        out: dict[str, Any] = {"dataset": test.name, "strategy": strategy, "backend": settings.backend,
                               "queries": len(queries), "history": len(past), "ingest": ingest, "selector": {}}

        base_run, timing = await _search_all(runtime, queries, strategy, nonce, "base", cases=False)
        out["baseline"] = _scores(qrels, base_run, timing)

        async def fresh() -> None:
            await runtime.cases.wipe(DEFAULT_COLLECTION)
            await runtime.cases.bank.refresh()

        await fresh()
        run, timing = await _search_all(runtime, queries, strategy, nonce, "cold", cases=True)
        out["cold"] = _scores(qrels, run, timing)

        await runtime.cases.import_judgements(DEFAULT_COLLECTION, past, judged, strategy)
        out["selector"]["with_cases"] = await _trained(runtime)
        run, timing = await _search_all(runtime, queries, strategy, nonce, "with", cases=True)
        out["with_cases"] = _scores(qrels, run, timing)
        served = {q: _request_id(nonce, "with", q) for q in queries}
        out["ceiling"] = await ceiling(runtime, test, qrels, base_run, served)
        out["ceiling"]["hindsight_ndcg@10"] = await hindsight(runtime, queries, qrels, base_run, served, strategy,
                                                              CHUNK_DEPTH)

        # shown_only: the history served with case memory on (from an empty bank and the fixed rule, as a
        # new deployment), then feedback marking what its top 10 showed that is relevant.
        await fresh()
        await runtime.cases.reset_selector()
        for qid, text in past.items():
            request_id = _request_id(nonce, "hist", qid)
            result = await runtime.search.search(text, top_k=10, strategy=strategy,
                                                 cases=CaseQuery(request_id, "search"))
            relevant = [h.chunk_id for h in result.hits if judged[qid].get(h.external_id or h.doc_id, 0) > 0]
            if relevant:
                await runtime.cases.from_feedback(None, request_id, {"relevant_chunk_ids": relevant})
        out["selector"]["shown_only"] = await _trained(runtime)
        run, timing = await _search_all(runtime, queries, strategy, nonce, "shown", cases=True)
        out["shown_only"] = _scores(qrels, run, timing)

        # noisy: a seeded share of the history's judgements is one wrong passage of its own top 10.
        await fresh()
        chosen = sorted(past, key=lambda q: mmh3.hash(f"{seed}:{q}", signed=False))[: round(noise * len(past))]
        noisy = dict(judged)
        rng = random.Random(seed)
        for qid in chosen:
            wrong = [doc for _, doc in await _plain_top(runtime, past[qid], strategy) if judged[qid].get(doc, 0) <= 0]
            if wrong:
                noisy[qid] = {rng.choice(wrong): 1}
        await runtime.cases.import_judgements(DEFAULT_COLLECTION, past, noisy, strategy)
        out["selector"]["noisy"] = await _trained(runtime)
        run, timing = await _search_all(runtime, queries, strategy, nonce, "noisy", cases=True)
        out["noisy"] = {**_scores(qrels, run, timing), "noise": noise, "replaced": len(chosen)}

        await fresh()
        base = out["baseline"]
        out["delta"] = {mode: {"ndcg@10": round(out[mode]["ndcg@10"] - base["ndcg@10"], 4),
                               "p95_ms": round(out[mode]["p95_ms"] - base["p95_ms"], 2)}
                        for mode in ("with_cases", "shown_only", "noisy", "cold")}
        return out
