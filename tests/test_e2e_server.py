"""End to end: `dtrag serve` with two uvicorn workers, keys from the CLI, the runbook's curl call."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from tests.support.redis_server import free_port

ROOT = Path(__file__).resolve().parents[1]
DTRAG = [sys.executable, "-m", "apps.cli.main"]


def run(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run(DTRAG + args, cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)


@pytest.fixture
def server(database_url: str, tmp_path):
    port = free_port()
    env = {**os.environ, "DATABASE_URL": database_url, "SECRET_KEY": "e2e-secret-key-0123456789", "LOG_LEVEL": "WARNING"}
    log = open(tmp_path / "server.log", "w")
    proc = subprocess.Popen(DTRAG + ["serve", "--port", str(port), "--workers", "2"], cwd=ROOT, env=env,
                            stdout=log, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{base}/health", timeout=1).status_code == 200:
                break
        except httpx.HTTPError:
            time.sleep(0.3)
    else:
        proc.terminate()
        raise RuntimeError((tmp_path / "server.log").read_text())
    yield base, env
    proc.terminate()
    proc.wait(timeout=30)


def test_runbook_flow_against_a_real_server(server) -> None:
    base, env = server
    created = run(["keys", "create", "--scope", "admin", "--json"], env)
    assert created.returncode == 0, created.stderr
    key = json.loads(created.stdout)
    assert set(key) == {"id", "api_key", "scope"} and key["scope"] == "admin"
    h = {"X-API-Key": key["api_key"]}
    r = httpx.post(f"{base}/api/v1/documents", headers=h, timeout=60,
                   json={"title": "Machine learning", "text": "Machine learning models learn from data."})
    assert r.status_code == 201, r.text
    curl = subprocess.run(
        ["curl", "-s", "-X", "POST", f"{base}/api/v1/search/", "-H", "Content-Type: application/json",
         "-H", f"X-API-Key: {key['api_key']}", "-d", '{"q":"machine learning","final_topk":5}'],
        capture_output=True, text=True, timeout=60,
    )
    body = json.loads(curl.stdout)
    assert body["hits"][0]["title"] == "Machine learning"
    listed = run(["keys", "list"], env)
    assert key["id"] in listed.stdout
    assert run(["keys", "revoke", key["id"]], env).returncode == 0
    # every worker refuses it now: new connections spread over both workers
    statuses = {httpx.post(f"{base}/api/v1/search", headers=h, json={"q": "x"}, timeout=30).status_code
                for _ in range(10)}
    assert statuses == {401}
    assert run(["keys", "revoke", "no-such-key"], env).returncode == 1
    assert httpx.get(f"{base}/docs", timeout=10).status_code == 200
