"""`dtrag bench rollout`: bucketing accuracy and stickiness, evaluation cost, and a canary drill over HTTP.

The drill runs real `dtrag serve` processes (two workers) on loopback against a copy of a small
corpus database: a healthy canary, a canary with injected errors, and a trickle of traffic.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

from apps.bench.databases import sqlite_url
from apps.bench.server import ROOT, serving
from apps.core.api_keys import Scope
from apps.core.config import Settings
from apps.core.migrations import upgrade
from apps.core.stats import percentile
from apps.rollout.flags import FlagConfig, FlagContext, evaluate
from apps.runtime import build_runtime
from apps.sample_corpus import sample_documents

USERS = 100_000
_ASSIGNMENTS = """
import hashlib, sys
from apps.rollout.flags import FlagConfig, FlagContext, evaluate
config = FlagConfig("new_pipeline", enabled=True, rollout=float(sys.argv[1]))
bits = "".join("1" if evaluate(config, FlagContext(user_id=f"user-{i}")).enabled else "0" for i in range(int(sys.argv[2])))
print(hashlib.sha256(bits.encode()).hexdigest())
"""


def _on(rollout: float) -> list[bool]:
    config = FlagConfig("new_pipeline", enabled=True, rollout=rollout)
    return [evaluate(config, FlagContext(user_id=f"user-{i}")).enabled for i in range(USERS)]


def bucketing() -> dict[str, Any]:
    shares = {f"{p:.0%}": round(100 * sum(_on(p)) / USERS, 3) for p in (0.05, 0.10, 0.50)}
    at10, at50 = _on(0.10), _on(0.50)
    digests = set()
    for seed in ("1", "2"):
        done = subprocess.run([sys.executable, "-c", _ASSIGNMENTS, "0.1", str(USERS)], cwd=ROOT, capture_output=True,
                              text=True, env={**os.environ, "PYTHONHASHSEED": seed}, check=True)
        digests.add(done.stdout.strip())
    local = hashlib.sha256("".join("1" if x else "0" for x in at10).encode()).hexdigest()
    config = FlagConfig("new_pipeline", enabled=True, rollout=0.1)
    contexts = [FlagContext(user_id=f"user-{i}") for i in range(USERS)]
    timings = []
    for ctx in contexts:
        start = time.perf_counter_ns()
        evaluate(config, ctx)
        timings.append((time.perf_counter_ns() - start) / 1000)
    return {
        "users": USERS,
        "observed_share_percent": shares,
        "same_variant_across_processes_percent": 100.0 if digests == {local} else 0.0,
        "ramp_10_to_50_moved_out": sum(1 for a, b in zip(at10, at50) if a and not b),
        "ramp_10_to_50_added": sum(1 for a, b in zip(at10, at50) if b and not a),
        "evaluation_us": {"p50": round(percentile(timings, 50), 3), "p99": round(percentile(timings, 99), 3)},
    }


async def _prepare(settings: Settings, template: Path) -> str:
    """The sample corpus in a template database every scenario starts from a copy of; an admin key."""
    url = sqlite_url(template)
    upgrade(url)
    async with build_runtime(settings.model_copy(update={"database_url": url})) as runtime:
        await runtime.ingestion.ingest(sample_documents())
        _, key = await runtime.keys.create(Scope.admin, name="rollout drill", rate_limit_per_minute=1_000_000)
    return key


async def _scenario(template: Path, key: str, name: str, *, rps: float, seconds: float, interval: float,
                    window: float, **env: str) -> dict[str, Any]:
    path = template.with_name(f"{name}.sqlite")
    shutil.copy(template, path)
    url = sqlite_url(path)
    queries = ["machine learning", "vitamin D", "database index", "기계 학습", "retrieval", "세종대왕"]
    headers = {"X-API-Key": key}
    async with serving(url, workers=2, CANARY_INTERVAL_S=str(interval), CANARY_WINDOW_S=str(window),
                       SEARCH_CACHE_TTL_S="0", **env) as (base, _):
        async with httpx.AsyncClient(base_url=base, timeout=30) as client:
            r = await client.put("/api/v1/admin/feature-flags/new_pipeline", headers=headers,
                                 json={"enabled": True, "rollout_fraction": 0.5, "reason": f"drill {name}"})
            r.raise_for_status()
            start = time.monotonic()
            first_error: float | None = None
            rolled_back: float | None = None
            verdicts: dict[str, int] = {}
            seen_at: set[str] = set()
            counts = {"new": 0, "legacy": 0, "errors": 0}
            i = 0
            next_poll = start
            while time.monotonic() - start < seconds:
                i += 1
                r = await client.post("/api/v1/search", headers={**headers, "X-User-Id": f"drill-user-{i}"},
                                      json={"q": queries[i % len(queries)], "final_topk": 3})
                counts[r.headers.get("X-Pipeline-Variant", "legacy")] += 1
                if r.status_code >= 500:
                    counts["errors"] += 1
                    first_error = first_error or time.monotonic()
                if time.monotonic() >= next_poll:
                    next_poll += 0.5
                    state = (await client.get("/feature-flags")).json()
                    last = state["canary"]["last_evaluation"]
                    if last and last["at"] not in seen_at:
                        seen_at.add(last["at"])
                        verdicts[last["verdict"]] = verdicts.get(last["verdict"], 0) + 1
                    if rolled_back is None and state["flags"]["new_pipeline"]["rollout_fraction"] == 0:
                        rolled_back = time.monotonic()
                await asyncio.sleep(max(0.0, start + i / rps - time.monotonic()))
            history = (await client.get("/api/v1/admin/feature-flags/new_pipeline/history", headers=headers)).json()
    path.unlink(missing_ok=True)
    return {
        "requests": counts, "verdicts": verdicts, "rolled_back": rolled_back is not None,
        "seconds_from_first_error_to_rollback": round(rolled_back - first_error, 2)
        if rolled_back and first_error else None,
        "rollback_audit": next((h["reason"] for h in history if h["actor"] == "canary-controller"), None),
        "interval_s": interval,
    }


async def canary_drill(settings: Settings, interval: float = 5.0) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        template = Path(tmp) / "drill.sqlite"
        key = await _prepare(settings, template)
        window = interval * 6
        return {
            "healthy": await _scenario(template, key, "healthy", rps=8, seconds=interval * 6, interval=interval,
                                       window=window),
            "errors_5_percent": await _scenario(template, key, "errors", rps=8, seconds=interval * 6,
                                                interval=interval, window=window, FAULT_ERROR_RATE="0.05"),
            "low_traffic": await _scenario(template, key, "low", rps=0.3, seconds=interval * 3, interval=interval,
                                           window=window),
        }


async def bench_rollout(settings: Settings, drill: bool = True, interval: float = 5.0) -> dict[str, Any]:
    # Bucketing is CPU work and subprocesses: a thread keeps it off the event loop.
    result: dict[str, Any] = {"bucketing": await asyncio.to_thread(bucketing)}
    if drill:
        result["canary_drill"] = await canary_drill(settings, interval)
    return result
