"""`dtrag bench answer`: the answer pipeline over a QA set with gold paragraphs and answer strings."""

from __future__ import annotations

import statistics
import time
from typing import Any

from apps.bench.beir import BeirDataset
from apps.bench.metrics import containment
from apps.bench.retrieval import ingest_dataset
from apps.core.config import Settings
from apps.core.migrations import upgrade
from apps.core.stats import percentile
from apps.core.visibility import EVERYTHING
from apps.ingestion import catalog
from apps.orchestration.src.answer_models import AnswerRequest
from apps.runtime import Runtime, build_runtime


async def bench_answer(dataset: BeirDataset, settings: Settings, provider: str | None, mode: str = "answer",
                       limit: int | None = None) -> dict[str, Any]:
    upgrade(settings.database_url)
    answers = dataset.answers()
    async with build_runtime(settings) as runtime:
        await ingest_dataset(runtime, dataset)
        await runtime.warm_up()
        pipeline = runtime.pipelines.get(provider)
        external = {}  # chunk's document id -> the dataset's id, to compare with qrels
        hits = contained = grounded = 0
        lengths: list[int] = []
        latencies: list[float] = []
        queries = list(dataset.queries.items())[:limit] if limit else list(dataset.queries.items())
        for qid, question in queries:
            start = time.perf_counter()
            result = await pipeline.execute(AnswerRequest(question, mode=mode, flags={}))  # type: ignore[arg-type]
            latencies.append((time.perf_counter() - start) * 1000)
            cited = {c for citation in result.citations for c in citation.chunk_ids}
            for source in result.sources:
                if source.doc_id not in external:
                    external[source.doc_id] = await _external_id(runtime, source.doc_id)
            cited_docs = {external[s.doc_id] for s in result.sources if s.chunk_id in cited}
            hits += bool(cited_docs & set(dataset.qrels.get(qid, {})))
            contained += containment(result.answer, answers.get(qid, []))
            grounded += bool(result.validation.grounded)
            lengths.append(len(result.answer))
        n = len(queries)
        return {
            "dataset": dataset.name,
            "backend": settings.backend,
            "provider": pipeline.provider.name,
            "model": pipeline.provider.model,
            "mode": mode,
            "queries": n,
            "source_hit_rate": round(hits / n, 4),
            "containment": round(contained / n, 4) if answers else None,
            "mean_answer_chars": round(statistics.fmean(lengths), 1),
            "grounded_rate": round(grounded / n, 4),
            "p50_ms": round(percentile(latencies, 50), 2),
            "p95_ms": round(percentile(latencies, 95), 2),
        }


async def _external_id(runtime: Runtime, doc_id: str) -> str:
    async with runtime.sessions() as session:
        record = await catalog.get(session, doc_id, EVERYTHING)
    return (record.document.external_id or "") if record is not None else ""
