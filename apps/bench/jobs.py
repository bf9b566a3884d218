"""`dtrag bench jobs`: what running ingestion as a durable job costs, and how long a kill -9 of a worker
mid-job delays it, on a real Redis and real `dtrag worker` processes.

The first `limit` documents of a BEIR corpus are ingested (a) inline (`IngestionService.ingest` in
this process), (b) as one job on one RQ worker, (c) as one job per share on N workers. RQ hands a job
to exactly one worker, so N workers can only share an ingest that is split into N jobs; the shares
hold about equal text, because embedding cost follows tokens, not documents. Each configuration gets
a fresh SQLite file and a fresh Redis, and the passage-vector cache is off everywhere: with it, every
configuration after the first would find its vectors cached and embed nothing.

A job configuration's time runs from the first job's creation to the last one's finish (the rows'
own timestamps), so it includes storing the payload, the queue, the worker's read and the commit.
Queue latency is a job's creation → its first claim: for the ingest jobs, and for a few no-op jobs
sent one at a time to the idle workers. The drill kills -9 the worker holding a job mid-ingest and
times the job's completion by the other worker (attempt 2): the lease must expire and a worker's
sweep re-send the job first, so JOB_LEASE_S dominates it.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import sys
import tempfile
import time
from asyncio.subprocess import DEVNULL, STDOUT, Process
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy import func, select

from apps.bench.beir import BeirDataset
from apps.bench.databases import scratch_database_url
from apps.bench.server import ROOT, free_port
from apps.core.config import Settings
from apps.core.migrations import upgrade
from apps.core.models import Document
from apps.core.stats import percentile
from apps.ingestion.documents import SourceDocument
from apps.jobs.kinds import document_fields
from apps.jobs.store import RUNNING, SUCCEEDED, Payload
from apps.jobs.types import TERMINAL
from apps.runtime import Runtime, build_runtime

PROBES = 10  # no-op jobs per job configuration for the idle-queue latency
TIMEOUT_S = 600.0
POLL_S = 0.1


def _scratch_settings(base: Settings, folder: Path, redis_url: str | None = None) -> Settings:
    """A fresh database in `folder`, no passage-vector cache, this configuration's Redis (if any)."""
    return base.model_copy(update={"database_url": scratch_database_url("jobs", folder), "embedding_cache_path": None,
                                   "redis_url": redis_url})


def _shares(documents: Sequence[SourceDocument], n: int) -> list[list[SourceDocument]]:
    """n shares of about equal text: the longest documents first, each to the lightest share."""
    shares: list[list[SourceDocument]] = [[] for _ in range(n)]
    sizes = [0] * n
    for doc in sorted(documents, key=lambda d: len(d.text), reverse=True):
        lightest = sizes.index(min(sizes))
        shares[lightest].append(doc)
        sizes[lightest] += len(doc.text)
    return shares


def _span_s(job: dict[str, Any], start: str, end: str) -> float:
    return (datetime.fromisoformat(job[end]) - datetime.fromisoformat(job[start])).total_seconds()


def _row(config: str, workers: int, threads: int, seconds: float, docs: int, tokens: int, chunks: int,
         queue_latency_s: Sequence[float] = (), idle_latency_s: Sequence[float] = ()) -> dict[str, Any]:
    return {
        "config": config, "workers": workers, "threads_per_worker": threads, "jobs": len(queue_latency_s),
        "docs": docs, "tokens": tokens, "chunks": chunks, "seconds": round(seconds, 2),
        "docs_per_s": round(docs / seconds, 2), "tokens_per_s": round(tokens / seconds, 1),
        "queue_latency_ms": [round(s * 1000, 1) for s in queue_latency_s],
        "idle_queue_latency_ms": {"p50": round(percentile(idle_latency_s, 50) * 1000, 1),
                                  "p95": round(percentile(idle_latency_s, 95) * 1000, 1)} if idle_latency_s else None,
    }


@dataclass
class Cluster:
    """A fresh database and Redis, warm `dtrag worker`s on them, and a runtime that submits jobs."""

    runtime: Runtime
    threads: int
    workers: dict[int, Process] = field(default_factory=dict)
    logs: dict[int, Path] = field(default_factory=dict)

    def check(self) -> None:
        for pid, worker in self.workers.items():
            if worker.returncode is not None:
                tail = self.logs[pid].read_text(errors="replace")[-2000:]
                raise RuntimeError(f"worker {pid} exited with {worker.returncode}:\n{tail}")

    async def submit(self, kind: str, documents: Sequence[SourceDocument] = ()) -> str:
        # run_here=False: a job the queue refused must fail the bench, not run in this process.
        submitted = await self.runtime.jobs.submit(
            kind, payloads=[Payload(None, document_fields(d), None) for d in documents], total=len(documents),
            run_here=False)
        job = await self.runtime.jobs.get(submitted.job_id)
        assert job is not None
        if job.mode != "queue":
            raise RuntimeError(f"the job did not go to the queue: {job.mode_reason}")
        return job.job_id

    async def finished(self, job_ids: Sequence[str]) -> list[dict[str, Any]]:
        deadline = time.monotonic() + TIMEOUT_S
        while True:
            jobs = [(await self.runtime.jobs.get(job_id)).model_dump(mode="json") for job_id in job_ids]
            if all(j["status"] in TERMINAL for j in jobs):
                break
            self.check()
            if time.monotonic() > deadline:
                raise TimeoutError(f"jobs not finished after {TIMEOUT_S:.0f} s: {job_ids}")
            await asyncio.sleep(POLL_S)
        for job in jobs:
            if job["status"] != SUCCEEDED:
                raise RuntimeError(f"job {job['job_id']} ended {job['status']}: {job['error']}")
        return jobs  # type: ignore[return-value]

    async def idle_latencies(self) -> list[float]:
        """Creation → claim of no-op jobs (a reindex with nothing to re-embed), one at a time."""
        latencies = []
        for _ in range(PROBES):
            job = (await self.finished([await self.submit("reindex")]))[0]
            latencies.append(_span_s(job, "created_at", "started_at"))
        return latencies


async def _until_listening(port: int, redis: Process) -> None:
    deadline = time.monotonic() + 10
    while True:
        try:
            _, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.close()
            return
        except OSError:
            if time.monotonic() > deadline or redis.returncode is not None:
                raise RuntimeError("redis-server did not start") from None
            await asyncio.sleep(0.05)


async def _stop(process: Process) -> None:
    if process.returncode is None:
        process.terminate()  # a worker's warm shutdown: it is idle by now
    try:
        await asyncio.wait_for(process.wait(), 30)
    except TimeoutError:
        process.kill()
        await process.wait()


@asynccontextmanager
async def cluster(base: Settings, scratch: Path, n: int) -> AsyncIterator[Cluster]:
    binary = shutil.which("redis-server")
    if binary is None:
        raise RuntimeError("redis-server is not installed (apt-get install redis-server)")
    scratch.mkdir()
    port = free_port()
    url = f"redis://127.0.0.1:{port}/0"
    redis = await asyncio.create_subprocess_exec(
        binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", str(scratch),
        stdout=DEVNULL, stderr=DEVNULL)
    settings = _scratch_settings(base, scratch, url)
    # OpenMP spins on its barriers, so n workers each using every core would stall each other (as
    # `serve --workers` does for queries): each gets cores / n for passages and queries alike.
    threads = max(1, (os.cpu_count() or 1) // n)
    env = {**os.environ, "DATABASE_URL": settings.database_url, "REDIS_URL": url, "EMBEDDING_CACHE_PATH": "",
           "LOG_LEVEL": "WARNING", "OMP_NUM_THREADS": str(threads), "QUERY_EMBEDDING_THREADS": str(threads)}
    group: Cluster | None = None
    try:
        await _until_listening(port, redis)
        upgrade(settings.database_url)
        async with build_runtime(settings) as runtime:
            group = Cluster(runtime, threads)
            for i in range(n):
                log = scratch / f"worker-{i}.log"
                with log.open("wb") as out:
                    worker = await asyncio.create_subprocess_exec(
                        sys.executable, "-m", "apps.cli.main", "worker", "--name", f"bench-{i}", cwd=ROOT, env=env,
                        stdout=out, stderr=STDOUT)
                group.workers[worker.pid], group.logs[worker.pid] = worker, log
            # The operator's path (audited, in this scratch database) rather than this process's environment.
            await runtime.flags.set("durable_worker", actor="bench-jobs", reason="bench jobs: run on RQ workers",
                                    enabled=True)
            deadline = time.monotonic() + 120
            while (await runtime.jobs.queue.status()).workers != n:
                group.check()
                if time.monotonic() > deadline:
                    raise RuntimeError(f"{n} workers did not register with Redis")
                await asyncio.sleep(0.2)
            # A worker builds its runtime (the model) on its first job: n no-op jobs sent back to back, one to
            # each idle worker (the first is still building when the next arrives), keep that out of the figures.
            await group.finished([await group.submit("reindex") for _ in range(n)])
            yield group
    finally:
        for process in [*(group.workers.values() if group else ()), redis]:
            await _stop(process)


async def _inline(base: Settings, scratch: Path, documents: Sequence[SourceDocument]) -> dict[str, Any]:
    scratch.mkdir()
    settings = _scratch_settings(base, scratch)
    upgrade(settings.database_url)
    async with build_runtime(settings) as runtime:
        # The jobs' batch size, so the job machinery around the ingest is the only difference.
        report = await runtime.ingestion.ingest(documents, batch_size=settings.job_batch_documents)
    threads = int(os.environ.get("OMP_NUM_THREADS") or os.cpu_count() or 1)
    return _row("inline", 0, threads, report.seconds, report.created + report.replaced, report.tokens, report.chunks)


async def _on_workers(base: Settings, scratch: Path, documents: Sequence[SourceDocument], n: int) -> dict[str, Any]:
    async with cluster(base, scratch, n) as group:
        jobs = await group.finished([await group.submit("ingest", share) for share in _shares(documents, n)])
        idle = await group.idle_latencies()
    start = min(datetime.fromisoformat(j["created_at"]) for j in jobs)
    end = max(datetime.fromisoformat(j["finished_at"]) for j in jobs)
    results = [j["result"] for j in jobs]
    return _row(f"{n} worker{'s' if n > 1 else ''}", n, group.threads, (end - start).total_seconds(),
                sum(r["created"] + r["replaced"] for r in results), sum(r["tokens"] for r in results),
                sum(r["chunks"] for r in results), [_span_s(j, "created_at", "started_at") for j in jobs], idle)


async def _kill_drill(base: Settings, scratch: Path, documents: Sequence[SourceDocument]) -> dict[str, Any]:
    async with cluster(base, scratch, 2) as group:
        store = group.runtime.jobs.store
        job_id = await group.submit("ingest", documents)
        # Kill once the heartbeat has recorded a committed batch: the job is really mid-way.
        while True:
            row = await store.get(job_id)
            if row.status == RUNNING and 0 < row.progress_done < len(documents):
                break
            if row.status in TERMINAL:
                raise RuntimeError(f"the job ended {row.status} before the kill; raise --limit")
            group.check()
            await asyncio.sleep(0.05)
        victim = int(row.lease_owner.rsplit(":", 2)[1])  # the owner id is host:pid:nonce
        if victim not in group.workers:
            raise RuntimeError(f"job {job_id} is held by {row.lease_owner}, not by one of the bench's workers")
        committed, at_kill = row.progress_done, row.attempt
        os.kill(victim, signal.SIGKILL)
        killed = time.perf_counter()
        await group.workers.pop(victim).wait()
        reclaimed_s: float | None = None
        while row.status not in TERMINAL:
            if time.perf_counter() - killed > TIMEOUT_S:
                raise TimeoutError(f"job {job_id} not finished {TIMEOUT_S:.0f} s after the kill")
            await asyncio.sleep(POLL_S)
            row = await store.get(job_id)
            if reclaimed_s is None and row.attempt > at_kill:
                reclaimed_s = time.perf_counter() - killed
        finished_s = time.perf_counter() - killed
        if row.status != SUCCEEDED:
            raise RuntimeError(f"job {job_id} ended {row.status} after the kill: {row.error}")
        async with group.runtime.engine.connect() as conn:
            stored = int((await conn.execute(select(func.count()).select_from(Document))).scalar_one())
    return {"docs": len(documents), "committed_before_kill": committed, "killed_attempt": at_kill,
            "final_attempt": row.attempt, "reclaimed_after_s": round(reclaimed_s or finished_s, 2),
            "finished_after_s": round(finished_s, 2),
            "final_result": {k: row.result[k] for k in ("created", "unchanged", "chunks", "seconds")},
            "documents_stored": stored}


async def bench_jobs(settings: Settings, dataset: BeirDataset, workers: int = 2, limit: int = 60) -> dict[str, Any]:
    documents = dataset.corpus(settings.max_document_bytes, [])[:limit]  # a list: BEIR's empty documents left out
    with tempfile.TemporaryDirectory(prefix="dtrag-bench-jobs-") as tmp:
        scratch = Path(tmp)
        rows = [await _inline(settings, scratch / "inline", documents),
                await _on_workers(settings, scratch / "one", documents, 1)]
        if workers > 1:
            rows.append(await _on_workers(settings, scratch / "many", documents, workers))
        recovery = await _kill_drill(settings, scratch / "kill", documents)
    return {"dataset": dataset.name, "documents": len(documents), "cores": os.cpu_count(),
            "batch_documents": settings.job_batch_documents, "lease_s": settings.job_lease_s,
            "heartbeat_s": settings.job_heartbeat_s, "configurations": rows, "kill_9": recovery}
