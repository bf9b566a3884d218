"""Job drills with real processes: kill -9 an RQ worker mid-ingest, and kill -9 an embedded server
mid-job; each time the job finishes exactly once (one set of documents and chunks)."""

from __future__ import annotations

import asyncio
import os
import random
import signal
import subprocess
import time
from pathlib import Path

from sqlalchemy import func, select

from apps.core.config import load_settings
from apps.core.db import create_engine
from apps.core.models import Chunk, Document, Job
from tests.support.redis_server import RedisServer
from tests.support.server import DTRAG, ROOT, run_cli

_WORDS = ("river", "mountain", "signal", "harvest", "engine", "lantern", "orbit", "meadow", "copper", "glacier",
          "festival", "archive", "compass", "thunder", "pepper", "violet", "cobalt", "saddle", "whistle", "ember")


def _corpus(folder: Path, n: int, seed: int) -> Path:
    rng = random.Random(seed)  # distinct text per run: the passage cache cannot make the drill instant
    folder.mkdir()
    for i in range(n):
        sentences = [" ".join(rng.choice(_WORDS) for _ in range(12)).capitalize() + "." for _ in range(20)]
        (folder / f"doc{i:03d}.txt").write_text(" ".join(sentences))
    return folder


async def _job(url: str, job_id: str):
    engine = create_engine(load_settings(database_url=url), pooled=False)
    try:
        async with engine.connect() as conn:
            job = (await conn.execute(select(Job).where(Job.id == job_id))).first()
            docs = (await conn.execute(select(func.count()).select_from(Document))).scalar_one()
            chunks = (await conn.execute(select(func.count()).select_from(Chunk))).scalar_one()
            expected = (await conn.execute(select(func.coalesce(func.sum(Document.chunk_count), 0)))).scalar_one()
        return job, docs, chunks, expected
    finally:
        await engine.dispose()


async def _until(url: str, job_id: str, done, timeout: float):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        state = await _job(url, job_id)
        if done(state[0]):
            return state
        await asyncio.sleep(0.1)
    raise AssertionError(f"job did not get there: {state[0]}")


def _spawn(args: list[str], env: dict[str, str], log: Path) -> subprocess.Popen:
    return subprocess.Popen(DTRAG + args, cwd=ROOT, env=env, stdout=log.open("w"), stderr=subprocess.STDOUT)


def _env(url: str, **extra: str) -> dict[str, str]:
    return {**os.environ, "DATABASE_URL": url, "SECRET_KEY": "drill-secret-key-0123456789", "LOG_LEVEL": "INFO",
            "JOB_LEASE_S": "3", "JOB_HEARTBEAT_S": "0.3", "JOB_BATCH_DOCUMENTS": "2", "EMBEDDING_CACHE_PATH": "",
            **extra}


async def test_kill_9_worker_mid_ingest(database_url: str, tmp_path: Path) -> None:
    redis = RedisServer()
    env = _env(database_url, REDIS_URL=redis.url, USE_DURABLE_WORKER="true")
    first = _spawn(["worker", "--name", "drill-a"], env, tmp_path / "a.log")
    second = None
    try:
        corpus = _corpus(tmp_path / "corpus", 30, seed=int(time.time()))
        out = run_cli(["ingest", "--async", str(corpus)], env)
        assert out.returncode == 0, out.stderr
        job_id = __import__("json").loads(out.stdout.strip().splitlines()[-1])["job_id"]
        await _until(database_url, job_id, lambda j: j.status == "running" and j.progress_done >= 4, 120)
        os.kill(first.pid, signal.SIGKILL)
        killed_at = time.monotonic()
        first.wait(10)
        second = _spawn(["worker", "--name", "drill-b"], env, tmp_path / "b.log")
        job, docs, chunks, expected = await _until(database_url, job_id, lambda j: j.status == "succeeded", 180)
        assert job.attempt == 2 and job.mode == "queue"
        assert docs == 30 and chunks == expected  # exactly one set of documents and chunks
        assert time.monotonic() - killed_at < 170
    finally:
        for proc in (first, second):
            if proc is not None and proc.poll() is None:
                proc.terminate()
                proc.wait(20)
        redis.stop()


async def test_kill_9_embedded_server_mid_job(database_url: str, tmp_path: Path) -> None:
    from tests.support.redis_server import free_port

    env = _env(database_url)
    port = free_port()
    corpus = _corpus(tmp_path / "corpus", 30, seed=int(time.time()) + 1)
    server = _spawn(["serve", "--port", str(port), "--workers", "1"], env, tmp_path / "s1.log")
    restarted = None
    try:
        out = run_cli(["ingest", "--async", str(corpus)], env)  # in-process: the server's sweep takes it
        assert out.returncode == 0, out.stderr
        job_id = __import__("json").loads(out.stdout.strip().splitlines()[-1])["job_id"]
        await _until(database_url, job_id, lambda j: j.status == "running" and j.progress_done >= 4, 180)
        os.kill(server.pid, signal.SIGKILL)
        server.wait(10)
        restarted = _spawn(["serve", "--port", str(port), "--workers", "1"], env, tmp_path / "s2.log")
        job, docs, chunks, expected = await _until(database_url, job_id, lambda j: j.status == "succeeded", 180)
        assert job.attempt == 2 and job.mode == "in_process"
        assert docs == 30 and chunks == expected
    finally:
        for proc in (server, restarted):
            if proc is not None and proc.poll() is None:
                proc.terminate()
                proc.wait(30)
