"""A real `dtrag serve` on a free loopback port, for benchmarks that must go over HTTP."""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import httpx
import psutil

ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def cpu_seconds(pid: int) -> float:
    """User + system CPU of a process and all its descendants (a server and its workers)."""
    root = psutil.Process(pid)
    total = 0.0
    for proc in [root, *root.children(recursive=True)]:
        with contextlib.suppress(psutil.NoSuchProcess):
            times = proc.cpu_times()
            total += times.user + times.system
    return total


@asynccontextmanager
async def serving(database_url: str, workers: int = 1, **env: str) -> AsyncIterator[tuple[str, int]]:
    """Yields (base URL, server pid) once /health answers; stops the server on exit."""
    port = free_port()
    full_env = {**os.environ, "DATABASE_URL": database_url, "LOG_LEVEL": "WARNING", **env}
    server = subprocess.Popen(
        [sys.executable, "-m", "apps.cli.main", "serve", "--port", str(port), "--workers", str(workers)],
        cwd=ROOT, env=full_env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        async with httpx.AsyncClient(base_url=base, timeout=5) as client:
            deadline = time.monotonic() + 120
            while True:
                try:
                    if (await client.get("/health")).status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                if time.monotonic() > deadline or server.poll() is not None:
                    raise RuntimeError("server did not start")
                await asyncio.sleep(0.3)
        yield base, server.pid
    finally:
        server.terminate()
        server.wait(timeout=30)
