"""End to end: `dtrag serve` with two uvicorn workers, keys from the CLI, the runbook's curl call."""

from __future__ import annotations

import json
import subprocess

import httpx
import pytest

from tests.support.server import run_cli as run
from tests.support.server import running_server


@pytest.fixture
def server(database_url: str, tmp_path):
    with running_server(database_url, tmp_path) as running:
        yield running


def test_runbook_flow_against_a_real_server(server) -> None:
    base, env = server
    created = run(["keys", "create", "--scope", "admin", "--json"], env)
    assert created.returncode == 0, created.stderr
    key = json.loads(created.stdout)
    assert set(key) == {"id", "api_key", "scope", "collections", "groups"} and key["scope"] == "admin"
    assert key["collections"] == ["*"]  # made without --collections: every collection
    h = {"X-API-Key": key["api_key"]}
    r = httpx.post(f"{base}/api/v1/documents?wait=true", headers=h, timeout=60,
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
