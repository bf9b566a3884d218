"""`dtrag bench soak`: a mix of search, answer, feedback and ingest at a fixed arrival rate against a
real server on loopback, for a duration; errors by status, latency per route, the RSS of every
serving process (at start, after the first tenth of the run, at the end, and sampled every 30 s), and
database growth. Growth is judged from the end of the warm-up: the first requests fill bounded
caches and allocator arenas once; a leak keeps growing after that.

Arrivals are open-loop (request i is sent at start + i / rate whether or not earlier ones finished),
so a server that falls behind shows it in latency and errors instead of slowing the load down.

With `hostile` > 0 the same run is made twice, each on a fresh server and database: clean, then with
that share of the arrivals replaced by hostile requests (apps/bench/hostile.py; a different client with
its own keys). The seed decides every request, so the benign ones are the same in both; the report
compares their latency, counts the hostile responses by status, and shows both phases' RSS growth.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

import httpx
import mmh3
import psutil
from sqlalchemy import text
from sqlalchemy.engine import make_url

from apps.bench.databases import scratch_database_url
from apps.bench.hostile import CASES, Target
from apps.bench.server import serving
from apps.core.api_keys import Scope
from apps.core.config import Settings
from apps.core.migrations import upgrade
from apps.core.stats import percentile
from apps.runtime import build_runtime
from apps.sample_corpus import sample_documents

# Share of arrivals per kind (of 100): mostly reads, as a team's traffic is.
MIX = (("search", 55), ("answer", 25), ("feedback", 12), ("ingest", 8))
QUESTIONS = ("What is retrieval-augmented generation?", "How do feature flags roll out safely?",
             "What does vitamin D deficiency cause?", "How does PostgreSQL index vectors?",
             "기계 학습이란 무엇인가?", "훈민정음은 언제 창제되었나?", "How do transformers use attention?",
             "What is reinforcement learning?")
# Benign p95 with the hostile share may be at most this multiple of the clean run's.
HOSTILE_P95_TARGET = 1.5
# How long the last requests of a phase may take after the last arrival before they are given up on.
DRAIN_S = 120.0


def _kind(i: int, seed: int = 0) -> str:
    bucket = mmh3.hash(f"soak:{i}", seed=seed, signed=False) % 100
    for kind, share in MIX:
        if bucket < share:
            return kind
        bucket -= share
    return MIX[0][0]


def _is_hostile(i: int, share: float, seed: int) -> bool:
    return mmh3.hash(f"hostile:{i}", seed=seed, signed=False) % 10_000 < share * 10_000


def _serving_processes(server_pid: int) -> list[psutil.Process]:
    """The processes that answer requests: uvicorn's workers, or the server itself with one worker."""
    root = psutil.Process(server_pid)
    workers = [p for p in root.children() if "resource_tracker" not in " ".join(p.cmdline())]
    return workers or [root]


def _rss_mb(processes: list[psutil.Process]) -> dict[int, float]:
    out = {}
    for p in processes:
        with contextlib.suppress(psutil.NoSuchProcess):
            out[p.pid] = round(p.memory_info().rss / 2**20, 1)
    return out


async def _database_bytes(settings: Settings) -> int:
    if settings.is_sqlite:
        path = Path(make_url(settings.database_url).database or "")
        return sum(p.stat().st_size for p in path.parent.glob(path.name + "*") if p.is_file())
    async with build_runtime(settings) as runtime, runtime.engine.connect() as conn:
        return int((await conn.execute(text("SELECT pg_database_size(current_database())"))).scalar_one())


async def _prepare(settings: Settings) -> dict[str, str]:
    """Migrate, ingest the sample corpus, mint the keys the load uses (the hostile client has its own)."""
    upgrade(settings.database_url)
    async with build_runtime(settings) as runtime:
        await runtime.ingestion.ingest(sample_documents())
        return {f"{who}{scope.name}": (await runtime.keys.create(scope, name=f"soak-{who}{scope.name}"))[1]
                for who in ("", "hostile-") for scope in (Scope.read, Scope.write)}


def _latency(values: list[float]) -> dict[str, Any]:
    return {"requests": len(values), "p50_ms": round(percentile(values, 50), 1),
            "p95_ms": round(percentile(values, 95), 1), "p99_ms": round(percentile(values, 99), 1)}


async def _phase(settings: Settings, duration_s: float, rate: float, workers: int, hostile: float,
                 seed: int) -> dict[str, Any]:
    """One run on its own server: the benign mix, with `hostile` of the arrivals hostile instead."""
    keys = await _prepare(settings)
    db_start = await _database_bytes(settings)
    env = {"RATE_LIMIT_PER_MINUTE": "1000000", "FEATURE_SOFT_Q_BANDIT": "true", "FEATURE_EXPERIENCE_REPLAY": "true"}
    statuses: Counter[str] = Counter()
    latencies: dict[str, list[float]] = defaultdict(list)
    hostile_statuses: dict[str, Counter[str]] = defaultdict(Counter)
    hostile_latencies: dict[str, list[float]] = defaultdict(list)
    hostile_details: dict[str, dict[str, str]] = defaultdict(dict)  # a 5xx's detail, the first seen per case
    degraded: Counter[str] = Counter()  # benign searches and answers served degraded (a leg or node failed)
    served: list[str] = []  # request ids of answered searches, for feedback
    async with serving(settings.database_url, workers, **env) as (base, pid):
        processes = _serving_processes(pid)
        rss_start = _rss_mb(processes)
        target = Target(base, keys["hostile-read"], keys["hostile-write"], settings)
        limits = httpx.Limits(max_connections=64, max_keepalive_connections=32)
        # Two clients: a slow hostile request never holds a connection a benign one waits for.
        async with httpx.AsyncClient(base_url=base, timeout=60, limits=limits) as client, \
                httpx.AsyncClient(base_url=base, timeout=60, limits=limits) as attacker:

            async def benign(i: int) -> None:
                kind = _kind(i, seed)
                if kind == "feedback" and not served:
                    kind = "search"
                read = {"X-API-Key": keys["read"], "X-Request-ID": f"soak-{i}"}
                question = QUESTIONS[i % len(QUESTIONS)]
                start = time.perf_counter()
                try:
                    if kind == "search":
                        r = await client.post("/api/v1/search", headers=read, json={"q": question, "final_topk": 5})
                    elif kind == "answer":
                        r = await client.post("/answer", headers=read, json={"q": question})
                    elif kind == "feedback":
                        r = await client.post("/api/v1/feedback", headers=read,
                                              json={"request_id": served[i % len(served)], "rating": 0.5})
                    else:
                        r = await client.post("/api/v1/documents", headers={"X-API-Key": keys["write"]}, json={
                            "title": f"Soak note {i}", "external_id": f"soak-{i}",
                            "text": f"Soak note {i}: the on-call rotation reviews {question.lower()}"})
                    status = str(r.status_code)
                    if kind == "search" and r.status_code == 200:
                        served.append(f"soak-{i}")
                    if kind in ("search", "answer") and r.status_code == 200 and r.json().get("degraded"):
                        degraded[kind] += 1
                except httpx.HTTPError as exc:
                    status = type(exc).__name__
                latencies[kind].append((time.perf_counter() - start) * 1000)
                statuses[status] += 1

            async def attack(i: int, n: int) -> None:
                name, case = CASES[n % len(CASES)]
                start = time.perf_counter()
                status, detail = await case(attacker, target, i)
                hostile_latencies[name].append((time.perf_counter() - start) * 1000)
                hostile_statuses[name][status] += 1
                if detail is not None:
                    hostile_details[name].setdefault(status, detail)

            start = time.monotonic()
            samples: list[tuple[float, dict[int, float]]] = []

            async def sample() -> None:
                while True:
                    samples.append((round(time.monotonic() - start, 1), _rss_mb(processes)))
                    await asyncio.sleep(30)

            sampler = asyncio.create_task(sample())
            warm_at = max(30.0, duration_s / 10)
            rss_warm: dict[int, float] = {}
            tasks = []
            attacks = 0
            for i in range(int(duration_s * rate)):
                delay = start + i / rate - time.monotonic()
                if delay > 0:
                    await asyncio.sleep(delay)
                if not rss_warm and time.monotonic() - start >= warm_at:
                    rss_warm = _rss_mb(processes)
                if hostile and _is_hostile(i, hostile, seed):
                    tasks.append(asyncio.create_task(attack(i, attacks)))
                    attacks += 1
                else:
                    tasks.append(asyncio.create_task(benign(i)))
            _, unfinished = await asyncio.wait(tasks, timeout=DRAIN_S)
            for task in unfinished:  # bounded: whatever still hangs is given up on and counted
                task.cancel()
            await asyncio.gather(*unfinished, return_exceptions=True)
            elapsed = time.monotonic() - start
            sampler.cancel()
        rss_end = _rss_mb(processes)
        rss_warm = rss_warm or rss_start
    db_end = await _database_bytes(settings)
    errors = {s: n for s, n in statuses.items() if not s.startswith("2")}
    def growth(since: dict[int, float]) -> dict[int, float]:
        return {pid: round((rss_end[pid] - mb) / mb * 100, 2) for pid, mb in since.items() if pid in rss_end}

    report: dict[str, Any] = {
        "backend": settings.backend, "workers": workers, "rate_per_s": rate, "duration_s": round(elapsed, 1),
        "requests": sum(statuses.values()), "errors": errors, "statuses": dict(statuses),
        "unfinished": len(unfinished),
        "routes": {kind: _latency(v) for kind, v in sorted(latencies.items())},
        "benign": _latency([ms for v in latencies.values() for ms in v]), "degraded": dict(degraded),
        "rss_mb": {"start": rss_start, "after_warm_up": rss_warm, "end": rss_end,
                   "growth_percent": growth(rss_warm), "growth_percent_from_start": growth(rss_start),
                   "growth_mb": {p: round(rss_end[p] - mb, 1) for p, mb in rss_warm.items() if p in rss_end},
                   "samples": samples},
        "database_bytes": {"start": db_start, "end": db_end, "growth": db_end - db_start},
    }
    if hostile:
        by_status = Counter(s for c in hostile_statuses.values() for s in c.elements())
        report["hostile"] = {
            "requests": sum(by_status.values()), "by_status": dict(sorted(by_status.items())),
            "server_errors": sum(n for s, n in by_status.items() if s.startswith("5")),
            "cases": {name: {"statuses": dict(hostile_statuses[name]),
                             "p50_ms": round(percentile(hostile_latencies[name], 50), 1),
                             "max_ms": round(max(hostile_latencies[name]), 1),
                             **({"details_5xx": hostile_details[name]} if hostile_details[name] else {})}
                      for name in sorted(hostile_statuses)},
        }
    return report


async def bench_soak(settings: Settings, duration_s: float, rate: float, workers: int = 1,
                     database_url: str | None = None, hostile: float = 0.0, seed: int = 0) -> dict[str, Any]:
    if not hostile:
        url = database_url or scratch_database_url("soak")
        return await _phase(settings.model_copy(update={"database_url": url}), duration_s, rate, workers, 0.0, seed)
    phases = {}
    for name, share in (("clean", 0.0), ("hostile", hostile)):
        url = database_url or scratch_database_url(f"soak-{name}")
        phases[name] = await _phase(settings.model_copy(update={"database_url": url}), duration_s, rate, workers,
                                    share, seed)
    clean, attacked = phases["clean"]["benign"], phases["hostile"]["benign"]
    ratio = round(attacked["p95_ms"] / clean["p95_ms"], 2) if clean["p95_ms"] else None
    return {
        "backend": phases["clean"]["backend"], "workers": workers, "rate_per_s": rate, "seed": seed,
        "hostile_share": hostile, "duration_s_per_phase": duration_s,
        "benign": {"clean": clean, "with_hostile": attacked, "p95_ratio": ratio, "p95_ratio_target": HOSTILE_P95_TARGET,
                   "within_target": ratio is not None and ratio <= HOSTILE_P95_TARGET,
                   "errors_clean": phases["clean"]["errors"], "errors_with_hostile": phases["hostile"]["errors"],
                   "degraded_clean": phases["clean"]["degraded"], "degraded_with_hostile": phases["hostile"]["degraded"]},
        "hostile": phases["hostile"]["hostile"],
        "rss_growth": {name: {k: p["rss_mb"][k] for k in ("growth_mb", "growth_percent", "growth_percent_from_start")}
                       for name, p in phases.items()},
        "phases": phases,
    }
