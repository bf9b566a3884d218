"""A real `dtrag serve` process on a free loopback port, and the CLI as a subprocess."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx

from tests.support.redis_server import free_port

ROOT = Path(__file__).resolve().parents[2]
DTRAG = [sys.executable, "-m", "apps.cli.main"]


def run_cli(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run(DTRAG + args, cwd=ROOT, env={"COLUMNS": "200", **env}, capture_output=True, text=True,
                          timeout=300)


@contextmanager
def running_server(database_url: str, log_dir: Path, workers: int = 2, cwd: Path = ROOT,
                   **extra_env: str) -> Iterator[tuple[str, dict]]:
    """`cwd`: where the server looks for its `.env` files."""
    port = free_port()
    env = {**os.environ, "DATABASE_URL": database_url, "SECRET_KEY": "e2e-secret-key-0123456789",
           "LOG_LEVEL": "WARNING", **extra_env}
    log_path = log_dir / f"server-{port}.log"
    with open(log_path, "w") as log:
        proc = subprocess.Popen(DTRAG + ["serve", "--port", str(port), "--workers", str(workers)], cwd=cwd,
                                env=env, stdout=log, stderr=subprocess.STDOUT)
        base = f"http://127.0.0.1:{port}"
        try:
            deadline = time.monotonic() + 90
            while True:
                try:
                    if httpx.get(f"{base}/health", timeout=1).status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                if time.monotonic() > deadline or proc.poll() is not None:
                    raise RuntimeError(f"server did not start:\n{log_path.read_text()}")
                time.sleep(0.3)
            yield base, env
        finally:
            proc.terminate()
            proc.wait(timeout=30)
