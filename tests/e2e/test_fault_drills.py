"""Fault drills with the real components, bounded and on loopback only: the database stopped under
load, Redis stopped and started, the SQLite disk full, a slow or oversized request body."""

from __future__ import annotations

import asyncio
import concurrent.futures
import json
import os
import shutil
import socket
import subprocess
import tempfile
import threading
import time
from pathlib import Path

import httpx
import pytest

from apps.core.config import load_settings
from apps.core.migrations import upgrade
from tests.support.api import api_client
from tests.support.corpus import corpus
from tests.support.postgres import PostgresHarness
from tests.support.redis_server import RedisServer
from tests.support.server import run_cli, running_server


def _read_key(env: dict[str, str]) -> str:
    # The drill hammers the server from four threads; the default per-key limit would answer 429.
    done = run_cli(["keys", "create", "--scope", "read", "--rate-limit", "1000000", "--json"], env)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)["api_key"]


def test_database_stopped_and_restarted_under_load(tmp_path: Path) -> None:
    """While PostgreSQL is down every request fails fast with 503 problem+json (no 500s, no hung
    workers); once it is back the same server answers again, without a restart."""
    postgres = PostgresHarness(tmp_path / "pg")
    try:
        name = postgres.create_database()
        url = postgres.url(name)
        upgrade(url)
        with running_server(url, tmp_path, workers=2) as (base, env):
            headers = {"X-API-Key": _read_key(env)}
            # (started, seconds, status, content type) of every request
            outcomes: list[tuple[float, float, int, str]] = []
            stop = threading.Event()

            def load() -> None:
                with httpx.Client(base_url=base, timeout=10) as client:
                    while not stop.is_set():
                        start = time.monotonic()
                        r = client.post("/api/v1/search", headers=headers, json={"q": "vitamin D"})
                        outcomes.append((start, time.monotonic() - start, r.status_code,
                                         r.headers.get("content-type", "")))

            with concurrent.futures.ThreadPoolExecutor(4) as pool:
                for _ in range(4):
                    pool.submit(load)
                time.sleep(1.0)
                healthy_before = len(outcomes)
                postgres.pause()
                down_from = len(outcomes)
                time.sleep(4.0)
                down = outcomes[down_from:]
                postgres.resume()
                resumed = time.monotonic()
                deadline = resumed + 30
                while time.monotonic() < deadline and not any(
                        start >= resumed and status == 200 for start, _, status, _ in outcomes[down_from:]):
                    time.sleep(0.2)
                # Each server worker reconnects on its own; give the slower one a moment, then every
                # request that starts from here on must succeed.
                time.sleep(2.0)
                recovered = time.monotonic()
                time.sleep(1.0)
                stop.set()
            after = [o for o in outcomes if o[0] >= recovered]
        assert healthy_before > 0 and all(status == 200 for _, _, status, _ in outcomes[:healthy_before])
        assert down and {status for _, _, status, _ in down} <= {200, 503}  # a request in flight may still finish
        assert sum(status == 503 for _, _, status, _ in down) >= len(down) // 2
        assert all(kind == "application/problem+json" for _, _, status, kind in down if status == 503)
        assert max(seconds for _, seconds, status, _ in down if status == 503) < 5.0  # fails fast, never hangs
        assert 500 not in {status for _, _, status, _ in outcomes}
        assert after and all(status == 200 for _, _, status, _ in after)  # recovered without a restart
    finally:
        postgres.stop()


async def test_redis_stopped_and_started(settings) -> None:
    """Health says degraded while Redis is down and healthy once it is back; search keeps answering
    (the cache is skipped and rate limits fail open), and the shared state comes back with Redis."""
    redis = RedisServer()
    try:
        shared = settings.model_validate({**settings.model_dump(), "redis_url": redis.url})
        async with api_client(shared) as api:
            await api.runtime.ingestion.ingest(corpus()[:2])
            search = {"q": "vitamin D", "final_topk": 2}
            assert (await api.client.get("/health")).json()["redis"] == "connected"
            redis.stop()
            health = await api.client.get("/health")
            assert health.status_code == 200
            assert (health.json()["status"], health.json()["redis"]) == ("degraded", "error")
            r = await api.client.post("/api/v1/search", headers=api.headers("read"), json=search)
            assert r.status_code == 200 and r.json()["hits"]
            redis.start()
            for _ in range(50):
                if (await api.client.get("/health")).json()["status"] == "healthy":
                    break
                await asyncio.sleep(0.1)
            health = (await api.client.get("/health")).json()
            assert (health["status"], health["redis"]) == ("healthy", "connected")
            first = await api.client.post("/api/v1/search", headers=api.headers("read"), json=search)
            second = await api.client.post("/api/v1/search", headers=api.headers("read"), json=search)
            assert first.status_code == second.status_code == 200 and second.json()["cached"]
    finally:
        redis.stop()


@pytest.fixture
def small_disk():
    """A 16 MB tmpfs for the SQLite file; skipped where this user cannot mount."""
    where = Path(tempfile.mkdtemp(prefix="dtrag-disk-"))
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=16m", "tmpfs", str(where)], capture_output=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a small filesystem here: {mounted.stderr.decode().strip()}")
    try:
        yield where
    finally:
        subprocess.run(["umount", str(where)], check=False)
        shutil.rmtree(where, ignore_errors=True)


def _fill(disk: Path) -> Path:
    filler = disk / "filler"
    with open(filler, "wb") as f:
        try:
            while True:
                f.write(b"\0" * 65536)
                f.flush()
        except OSError:
            pass
    return filler


async def test_a_full_disk_refuses_writes_clearly_and_keeps_reads(small_disk: Path) -> None:
    url = f"sqlite+aiosqlite:///{small_disk / 'dt_rag.db'}"
    upgrade(url)
    full = load_settings(database_url=url)
    async with api_client(full) as api:
        await api.runtime.ingestion.ingest(corpus())
        before = (await api.client.get("/api/v1/documents", headers=api.headers("read"))).json()["total"]
        filler = _fill(small_disk)
        big = {"title": "Kimchi", "text": " ".join(f"Kimchi fact {i} about fermented cabbage." for i in range(200))}
        r = await api.client.post("/api/v1/documents?wait=true", headers=api.headers("write"), json=big)
        assert r.status_code == 507 and r.headers["content-type"] == "application/problem+json", r.text
        assert "disk is full" in r.json()["detail"]
        listed = await api.client.get("/api/v1/documents", headers=api.headers("read"))
        assert listed.status_code == 200 and listed.json()["total"] == before  # nothing half-written
        hits = await api.client.post("/api/v1/search", headers=api.headers("read"), json={"q": "vitamin D"})
        assert hits.status_code == 200 and hits.json()["hits"]
        filler.unlink()
        r = await api.client.post("/api/v1/documents?wait=true", headers=api.headers("write"), json=big)
        assert r.status_code == 201, r.text


def _raw(base: str, payload: bytes) -> tuple[str, float]:
    """Send `payload` and read the reply's head, however much of its body the client declared is missing."""
    host, port = base.removeprefix("http://").split(":")
    start = time.monotonic()
    with socket.create_connection((host, int(port)), timeout=30) as sock:
        try:
            sock.sendall(payload)
        except OSError:
            pass  # the server answered and closed before we finished: what a limit should do
        reply = b""
        while b"\r\n\r\n" not in reply:
            chunk = sock.recv(65536)
            if not chunk:
                break
            reply += chunk
    return reply.decode("latin-1"), time.monotonic() - start


def _trickle(base: str, head: bytes, every_s: float, for_s: float) -> tuple[str, float]:
    """Send `head`, then one body byte every `every_s` until the server answers (or `for_s` passes)."""
    host, port = base.removeprefix("http://").split(":")
    start = time.monotonic()
    with socket.create_connection((host, int(port)), timeout=for_s) as sock:
        sock.sendall(head)
        sock.settimeout(every_s)
        reply = b""
        while b"\r\n\r\n" not in reply and time.monotonic() - start < for_s:
            try:
                chunk = sock.recv(65536)
                if not chunk:
                    break
                reply += chunk
            except TimeoutError:
                try:
                    sock.sendall(b" ")
                except OSError:
                    break
    return reply.decode("latin-1"), time.monotonic() - start


def test_slow_and_oversized_bodies(tmp_path: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'body.db'}"
    upgrade(url)
    with running_server(url, tmp_path, workers=1, BODY_READ_TIMEOUT_S="1", MAX_REQUEST_BYTES="1048576") as (base, env):
        key = _read_key(env).encode()
        head = (b"POST /api/v1/search HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                b"X-API-Key: " + key + b"\r\nContent-Length: 1000\r\n\r\n")
        reply, seconds = _raw(base, head + b'{"q": "vit')  # 10 of 1,000 bytes, then silence
        assert reply.startswith("HTTP/1.1 408") and 0.9 < seconds < 4, (reply[:200], seconds)
        # Never silent for a second, yet never done: the timeout bounds the whole body, not each piece.
        reply, seconds = _trickle(base, head, every_s=0.3, for_s=8)
        assert reply.startswith("HTTP/1.1 408") and 0.9 < seconds < 4, (reply[:200], seconds)
        # No Content-Length to go by: a chunked body is counted as it arrives and cut off at the limit.
        chunk = b"x" * 65536
        body = b"".join(b"%x\r\n%s\r\n" % (len(chunk), chunk) for _ in range(64)) + b"0\r\n\r\n"
        chunked = (b"POST /api/v1/search HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                   b"X-API-Key: " + key + b"\r\nTransfer-Encoding: chunked\r\n\r\n")
        reply, _ = _raw(base, chunked + body)
        assert reply.startswith("HTTP/1.1 413"), reply[:200]
        declared = (b"POST /api/v1/documents HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                    b"Content-Length: 5000000\r\n\r\n")
        reply, seconds = _raw(base, declared)  # refused from its headers, before any body is sent
        assert reply.startswith("HTTP/1.1 413") and seconds < 2
        assert httpx.get(f"{base}/health", timeout=5).status_code == 200  # the worker is free again
    assert os.path.exists(url.removeprefix("sqlite+aiosqlite:///"))
