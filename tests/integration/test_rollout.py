"""Progressive delivery: hashing, flag sources and precedence, audited overrides, propagation, canary."""

from __future__ import annotations

import asyncio
import json
import os
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest

from apps.core.config import load_settings
from apps.core.db import create_engine
from apps.core.flags import FlagConfigError
from apps.core.request_log import RequestLog
from apps.rollout.canary import CanaryController
from apps.rollout.flags import FlagService
from tests.support.api import Api, api_client
from tests.support.server import run_cli, running_server

ROOT = Path(__file__).resolve().parents[2]


# --- overrides, audit, propagation -----------------------------------------------------------------------

async def test_overrides_are_audited_and_reach_another_instance(database_url: str) -> None:
    engines = [create_engine(load_settings(database_url=database_url)) for _ in range(2)]
    writer, reader = (FlagService(e, refresh_s=0.2, environ={"NEW_PIPELINE_ROLLOUT_PERCENTAGE": "0.1"})
                      for e in engines)
    await reader.refresh(force=True)
    assert reader.config("new_pipeline").rollout == 0.1
    await writer.set("new_pipeline", actor="alice", reason="ramp", rollout=0.5)
    await writer.set("new_pipeline", actor="bob", reason="vip", user_ids=["vip"])
    reader.start()
    deadline = time.monotonic() + 2
    while reader.config("new_pipeline").rollout != 0.5 or not reader.config("new_pipeline").user_ids:
        assert time.monotonic() < deadline, "override did not propagate within 2 s"
        await asyncio.sleep(0.05)
    config = reader.config("new_pipeline")
    assert config.source == "override" and config.user_ids == {"vip"} and config.updated_by == "bob"
    history = await reader.history("new_pipeline")
    assert [h["actor"] for h in history] == ["bob", "alice"]
    assert history[1]["old"]["rollout_fraction"] == 0.1 and history[1]["new"]["rollout_fraction"] == 0.5
    assert history[0]["reason"] == "vip"
    with pytest.raises(FlagConfigError):
        await writer.set("new_pipeline", actor="x", reason="bad", rollout=5)
    with pytest.raises(FlagConfigError):
        await writer.set("new_pipeline", actor="x", reason="  ", rollout=0.2)
    await writer.clear("new_pipeline", actor="carol", reason="back to env")
    await reader.refresh(force=True)
    assert reader.config("new_pipeline").source == "environment"
    await reader.stop()
    for e in engines:
        await e.dispose()


@pytest.fixture
async def api(settings):
    async with api_client(settings) as client:
        yield client


async def test_flag_endpoints(api: Api) -> None:
    listing = (await api.client.get("/feature-flags")).json()
    assert set(listing["flags"]) >= {"soft_q_bandit", "new_pipeline"} and not listing["flags"]["new_pipeline"]["enabled"]
    put = await api.client.put("/api/v1/admin/feature-flags/new_pipeline", headers=api.headers(),
                               json={"rollout_percentage": 0.1, "user_ids": ["user-id-1"], "reason": "canary"})
    assert put.status_code == 200 and put.json()["enabled"] and put.json()["rollout_fraction"] == 0.1
    check = (await api.client.get("/feature-flags/check", params={"user_id": "user-id-1", "job_id": "j"})).json()
    assert check["pipeline_variant"] == "new" and check["flags"]["new_pipeline"] and check["reasons"]["new_pipeline"] == "allowlist"
    outside = (await api.client.get("/feature-flags/check", params={"user_id": "user-2"})).json()  # bucket 7029
    assert outside["pipeline_variant"] == "legacy" and outside["bucket"] == 7029
    response = await api.client.post("/api/v1/search", headers={**api.headers("read"), "X-User-Id": "user-id-1"},
                                     json={"q": "anything"})
    assert response.headers["X-Pipeline-Variant"] == "new"
    for bad, status in (({"rollout_fraction": 10, "reason": "x"}, 422), ({"reason": "x"}, 422),
                        ({"enabled": True}, 422)):
        r = await api.client.put("/api/v1/admin/feature-flags/new_pipeline", headers=api.headers(), json=bad)
        assert r.status_code == status, r.text
    assert (await api.client.put("/api/v1/admin/feature-flags/nope", headers=api.headers(),
                                 json={"enabled": True, "reason": "x"})).status_code == 404
    assert (await api.client.put("/api/v1/admin/feature-flags/new_pipeline", headers=api.headers("write"),
                                 json={"enabled": True, "reason": "x"})).status_code == 403
    assert (await api.client.post("/feature-flags/reload")).status_code == 401
    assert (await api.client.post("/feature-flags/reload", headers=api.headers())).json()["reloaded"] is True
    assert (await api.client.get("/feature-flags/check")).status_code == 422
    history = (await api.client.get("/api/v1/admin/feature-flags/new_pipeline/history", headers=api.headers())).json()
    assert history[0]["flag"] == "*" and history[1]["reason"] == "canary"  # the reload, then the change


async def test_metrics_views_and_debug(api: Api) -> None:
    await api.client.post("/api/v1/search", headers=api.headers("read"), json={"q": "machine learning"})
    text = (await api.client.get("/metrics")).text
    for name in ("dtrag_requests_total", "dtrag_request_duration_seconds_bucket", "replay_buffer_size",
                 "q_table_states", "batch_learning_success_total", "canary_state", "feature_flag_evaluations_total"):
        assert name in text, name
    assert 'variant="legacy"' in text
    read = api.headers("read")
    view = (await api.client.get("/metrics", params={"minutes": 60}, headers=read)).json()
    assert view["requests_by_pipeline_type"]["legacy"] >= 1 and "p95" in view["latency_ms_by_variant"]["legacy"]
    assert (await api.client.get("/metrics", headers={**read, "Accept": "application/json"})
            ).json()["window_minutes"] == 60
    health = (await api.client.get("/metrics/health", headers=read)).json()
    assert health["status"] in ("healthy", "warning", "critical") and health["checks"]["error_rate"]["value"] == 0
    cost = (await api.client.get("/metrics/llm-cost", params={"minutes": 1440}, headers=read)).json()
    assert cost["total_cost_usd"] == 0 and cost["window_minutes"] == 1440
    assert (await api.client.get("/debug")).status_code == 401  # settings and flags are for admins
    assert (await api.client.get("/debug", headers=read)).status_code == 403
    debug = (await api.client.get("/debug", headers=api.headers("admin"))).json()
    assert debug["settings"]["secret_key"] == "***" and debug["providers"]["extractive"] == "available"


async def test_metrics_can_require_a_key(settings) -> None:
    locked = settings.model_validate({**settings.model_dump(), "metrics_require_key": True})
    async with api_client(locked) as api:
        assert (await api.client.get("/metrics")).status_code == 401
        assert (await api.client.get("/metrics/health")).status_code == 401
        assert (await api.client.get("/metrics", headers=api.headers("read"))).status_code == 200


async def test_debug_is_hidden_and_faults_refused_in_production(settings) -> None:
    from apps.core.config import SettingsError

    with pytest.raises(SettingsError, match="FAULT_ERROR_RATE"):
        load_settings(environment="production", secret_key="a-real-production-secret", fault_error_rate=0.1)
    prod = settings.model_validate({**settings.model_dump(), "environment": "production",
                                    "secret_key": "a-real-production-secret"})
    async with api_client(prod) as api:
        assert (await api.client.get("/debug", headers=api.headers("admin"))).status_code == 404


# --- canary ---------------------------------------------------------------------------------------------

class _Webhook(BaseHTTPRequestHandler):
    received: list[dict] = []

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        _Webhook.received.append(json.loads(body))
        self.send_response(204)
        self.end_headers()

    def log_message(self, *args) -> None:
        pass


async def test_canary_rolls_back_on_real_traffic_once_with_a_single_leader(settings) -> None:
    hook = ThreadingHTTPServer(("127.0.0.1", 0), _Webhook)
    threading.Thread(target=hook.serve_forever, daemon=True).start()
    settings = settings.model_validate({**settings.model_dump(), "fault_error_rate": 0.2, "canary_window_s": 60,
                                        "canary_webhook_url": f"http://127.0.0.1:{hook.server_port}/hook"})
    async with api_client(settings) as api:
        put = await api.client.put("/api/v1/admin/feature-flags/new_pipeline", headers=api.headers(),
                                   json={"rollout_percentage": 0.5, "reason": "canary start"})
        assert put.status_code == 200
        runtime = api.runtime
        other_worker = CanaryController(runtime.engine, runtime.flags, RequestLog(runtime.engine), settings)
        leader = api.runtime.canary
        # Too little traffic: hold, never pass or fail.
        for i in range(3):
            await api.client.post("/api/v1/search", headers={**api.headers("read"), "X-User-Id": f"user-{i}"},
                                  json={"q": "machine learning"})
        outcomes = [await leader.tick(), await other_worker.tick()]
        acted = [o for o in outcomes if o is not None]
        assert len(acted) == 1 and acted[0]["verdict"] == "hold"  # one controller acts, the other stands by
        statuses = {"new": 0, "legacy": 0}
        for i in range(120):
            r = await api.client.post("/api/v1/search", headers={**api.headers("read"), "X-User-Id": f"user-{i}"},
                                      json={"q": "machine learning"})
            statuses[r.headers["X-Pipeline-Variant"]] += 1
            assert r.status_code in (200, 500)
            if r.status_code == 500:
                assert r.headers["X-Pipeline-Variant"] == "new"  # faults hit the canary only
        assert statuses["new"] > 20 and statuses["legacy"] > 20
        leading = leader if outcomes[0] is not None else other_worker
        result = await leading.tick()
        assert result["verdict"] == "breach" and result["action"] == "rolled_back"
        assert runtime.flags.config("new_pipeline").rollout == 0.0
        history = await runtime.flags.history("new_pipeline")
        assert history[0]["actor"] == "canary-controller" and "error rate" in history[0]["reason"]
        # Idempotent: the flag is no longer in rollout, so nothing more happens.
        assert await leading.tick() is None
        assert len([h for h in await runtime.flags.history("new_pipeline") if h["actor"] == "canary-controller"]) == 1
        status = (await api.client.get("/feature-flags")).json()["canary"]
        assert status["last_evaluation"]["action"] == "rolled_back" and not status["active"]
        detailed = (await api.client.get("/health", params={"detailed": "true"})).json()
        assert detailed["canary"]["last_evaluation"]["verdict"] == "breach"
        assert _Webhook.received[-1]["event"] == "canary_rollback" and _Webhook.received[-1]["flag"] == "new_pipeline"
        await other_worker.stop()
    hook.shutdown()


async def test_canary_promotes_in_stages_when_healthy(settings) -> None:
    settings = settings.model_validate({**settings.model_dump(), "canary_promotion_steps": "0.5,1.0",
                                        "canary_promotion_intervals": 2, "canary_window_s": 60})
    async with api_client(settings) as api:
        await api.client.put("/api/v1/admin/feature-flags/new_pipeline", headers=api.headers(),
                             json={"rollout_fraction": 0.2, "reason": "start"})
        for i in range(80):
            r = await api.client.post("/api/v1/search", headers={**api.headers("read"), "X-User-Id": f"u{i}"},
                                      json={"q": "anything"})
            assert r.status_code == 200
        canary = api.runtime.canary
        first, second = await canary.tick(), await canary.tick()
        assert first["verdict"] == "pass" and first["action"] == "none"
        assert second["action"] == "promoted_to_0.5"
        assert api.runtime.flags.config("new_pipeline").rollout == 0.5
        history = await api.runtime.flags.history("new_pipeline")
        assert history[0]["actor"] == "canary-controller" and "staged promotion" in history[0]["reason"]


def test_reload_reaches_every_worker_of_a_real_server(tmp_path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'workers.db'}"
    with running_server(url, tmp_path, workers=2) as (base, env):
        key = run_cli(["keys", "create", "--scope", "admin", "--json"], env)
        headers = {"X-API-Key": json.loads(key.stdout)["api_key"]}
        r = httpx.put(f"{base}/api/v1/admin/feature-flags/soft_q_bandit", headers=headers,
                      json={"enabled": True, "reason": "propagation test"})
        assert r.status_code == 200
        changed = time.monotonic()
        seen_workers: set[str] = set()
        while len(seen_workers) < 2:
            body = httpx.get(f"{base}/feature-flags").json()
            assert time.monotonic() - changed < 10, "did not reach both workers"
            if body["flags"]["soft_q_bandit"]["enabled"]:
                seen_workers.add(body["served_by"])
            else:
                assert time.monotonic() - changed < 2.5, "a worker still had the old value after 2 s"
        for _ in range(20):
            httpx.get(f"{base}/metrics/health")
        # Counters from both workers add up whichever worker answers the scrape.
        for _ in range(4):
            line = next(x for x in httpx.get(f"{base}/metrics").text.splitlines()
                        if x.startswith("dtrag_requests_total") and 'endpoint="/metrics/health"' in x)
            assert float(line.rsplit(" ", 1)[1]) == 20.0, line


def test_flags_cli(tmp_path) -> None:
    env = {**os.environ, "DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path / 'cli.db'}"}
    assert run_cli(["db", "upgrade"], env).returncode == 0
    done = run_cli(["flags", "set", "new_pipeline", "--rollout", "0.1", "--users", "user-id-1", "--reason",
                    "canary 10 %"], env)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["rollout_fraction"] == 0.1 and json.loads(done.stdout)["enabled"]
    check = json.loads(run_cli(["flags", "check", "--user-id", "user-id-1"], env).stdout)
    assert check["pipeline_variant"] == "new" and check["flags"]["new_pipeline"]
    assert json.loads(run_cli(["flags", "check", "--user-id", "user-2"], env).stdout)["bucket"] == 7029
    listed = {r["name"]: r for r in json.loads(run_cli(["flags", "list", "--json"], env).stdout)}
    assert listed["new_pipeline"]["source"] == "override" and listed["new_pipeline"]["allowlist"] == 1
    history = json.loads(run_cli(["flags", "history", "new_pipeline"], env).stdout)
    assert history[0]["reason"] == "canary 10 %" and history[0]["actor"].startswith("cli:")
    refused = run_cli(["flags", "set", "new_pipeline", "--rollout", "10", "--reason", "oops"], env)
    assert refused.returncode == 1 and "fraction between 0 and 1" in refused.stderr
    assert run_cli(["flags", "set", "nope", "--on", "--reason", "x"], env).returncode == 2
