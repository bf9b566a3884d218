"""The dashboard's JSON views on both backends: admin only, per-bucket SQL aggregates that agree with the
one percentile definition, the learning state after real traffic, the canary's verdicts and rollbacks."""

from __future__ import annotations

import math
from collections import defaultdict
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import insert

from apps.core.models import RequestEvent, utcnow
from apps.core.stats import percentile
from apps.orchestration.src.bandit import ope
from apps.rollout.canary import ACTOR
from tests.support.api import Api, api_client
from tests.support.corpus import corpus

VIEWS = ["/api/v1/admin/dashboard/timeseries", "/api/v1/admin/dashboard/canary",
         "/api/v1/admin/dashboard/learning", "/api/v1/admin/dashboard/llm"]


@pytest.fixture
async def api(settings):
    # Learn every 2 experiences so a handful of requests fills the Q-table; the test drives the canary.
    settings = settings.model_validate({**settings.model_dump(), "replay_learn_every": 2, "replay_batch_size": 4,
                                        "canary_enabled": False})
    async with api_client(settings) as client:
        yield client


async def set_flag(api: Api, name: str, **body: Any) -> None:
    response = await api.client.put(f"/api/v1/admin/feature-flags/{name}", headers=api.headers(),
                                    json={"reason": "test", **body})
    assert response.status_code == 200, response.text


async def test_views_need_an_admin_key_and_the_shell_holds_no_data(api: Api) -> None:
    for path in VIEWS:
        assert (await api.client.get(path)).status_code == 401
        for scope in ("read", "write"):
            refused = await api.client.get(path, headers=api.headers(scope))
            assert refused.status_code == 403 and "needs 'admin'" in refused.json()["detail"]
        assert (await api.client.get(path, headers=api.headers())).status_code == 200, path
    shell = await api.client.get("/dashboard")
    assert shell.status_code == 200 and shell.headers["content-type"].startswith("text/html")
    assert "/dashboard/static/dashboard.js" in shell.text and "soft_q_bandit" not in shell.text
    for asset, kind in (("dashboard.js", "javascript"), ("dashboard.css", "css")):
        served = await api.client.get(f"/dashboard/static/{asset}")
        assert served.status_code == 200 and kind in served.headers["content-type"]
    # The page loads nothing from elsewhere: it has to work with no network.
    assert "http" not in shell.text.replace("http://www.w3.org", "")
    for name in ("views.py", "..%2Fviews.py", "..%2F..%2Fmain.py"):
        assert (await api.client.get(f"/dashboard/static/{name}")).status_code == 404


async def test_timeseries_buckets_agree_with_the_one_percentile_definition(api: Api) -> None:
    now = utcnow()
    rows: list[dict[str, Any]] = []
    for i in range(60):
        variant = "new" if i % 3 else "legacy"
        rows.append({"ts": now - timedelta(seconds=5 + 7 * i), "endpoint": "/api/v1/search" if i % 2 else "/answer",
                     "method": "POST", "status": 500 if i % 11 == 4 else 200, "latency_ms": float((i * 37) % 101),
                     "variant": variant, "authenticated": True})
    # Not on the canary's routes, outside the window, without a valid key: none may count.
    rows.append({**rows[0], "endpoint": "/health", "latency_ms": 1e6})
    rows.append({**rows[0], "ts": now - timedelta(hours=2), "latency_ms": 1e6})
    rows.append({**rows[0], "authenticated": False, "status": 500, "latency_ms": 1e6})
    async with api.runtime.engine.begin() as conn:
        await conn.execute(insert(RequestEvent), rows)

    response = await api.client.get("/api/v1/admin/dashboard/timeseries", headers=api.headers(),
                                    params={"minutes": 10, "bucket_s": 60})
    assert response.status_code == 200
    body = response.json()
    start = body["start"]
    expected: dict[tuple[str, int], list[dict[str, Any]]] = defaultdict(list)
    for r in rows[:60]:
        expected[(r["variant"], start + (math.floor(r["ts"].timestamp()) - start) // 60 * 60)].append(r)
    got = {(variant, p["t"]): p for variant, points in body["series"].items() for p in points}
    assert set(got) == set(expected) and len({t for _, t in got}) >= 5
    for key, events in expected.items():
        latencies = [e["latency_ms"] for e in events]
        errors = sum(e["status"] >= 500 for e in events)
        point = got[key]
        assert point["requests"] == len(events) and point["errors"] == errors
        assert point["error_rate"] == round(errors / len(events), 4)
        assert point["latency_ms"]["p95"] == round(percentile(latencies, 95), 2)
        assert point["latency_ms"]["p50"] == round(percentile(latencies, 50), 2)
    assert body["sla"] == {"error_rate": api.runtime.settings.canary_error_rate_sla,
                           "p95_ms": api.runtime.settings.canary_p95_sla_ms}

    for params, field in (({"minutes": 1441}, "minutes"), ({"minutes": 1440, "bucket_s": 10}, "bucket_s")):
        refused = await api.client.get("/api/v1/admin/dashboard/timeseries", headers=api.headers(), params=params)
        assert refused.status_code == 422 and field in refused.text


async def test_learning_view_after_real_traffic(api: Api) -> None:
    runtime = api.runtime
    await runtime.ingestion.ingest(corpus())
    await set_flag(api, "soft_q_bandit", enabled=True)
    await set_flag(api, "experience_replay", enabled=True)
    queries = ["vitamin D deficiency", "relational database indexes", "기계 학습 모델", "machine learning",
               "sunlight and bones", "B-tree indexes"]
    for i, q in enumerate(queries):
        response = await api.client.post("/api/v1/search/", headers={**api.headers("read"), "X-Request-ID": f"d{i}"},
                                         json={"q": q, "final_topk": 3})
        assert response.json()["bandit"] is not None
        feedback = await api.client.post("/api/v1/feedback", headers=api.headers("read"),
                                         json={"request_id": f"d{i}", "rating": 0.5 if i % 2 else -0.25})
        assert feedback.status_code == 200
    await runtime.bandit.drain()

    response = await api.client.get("/api/v1/admin/dashboard/learning", headers=api.headers(),
                                    params={"decisions": 4})
    body = response.json()
    learner = runtime.bandit.learner
    assert body["arms"] == list(learner.arms) and body["policy_version"] >= 1
    assert body["states"] and {s["state"] for s in body["states"]} == set(learner.q_table)
    for state in body["states"]:
        assert state["greedy"] == learner.greedy(state["state"])
        assert state["visits"] == sum(c["updates"] for c in state["cells"] if c) > 0
    assert body["replay"]["size"] == len(queries) and body["replay"]["capacity"] >= body["replay"]["size"]
    decisions = body["decisions"]
    assert [d["request_id"] for d in decisions] == ["d5", "d4", "d3", "d2"]  # newest first, limited
    for d in decisions:
        assert math.isclose(sum(d["probabilities"].values()), 1.0, abs_tol=1e-5) and d["action"] in d["probabilities"]
        assert d["reward_source"] == "explicit" and d["reward"] is not None
    assert body["ope"]["policy"] == "greedy" and body["ope"]["n"] == len(queries)
    assert body["ope"] == await ope.evaluate_log(runtime.bandit.decisions, learner, "greedy")  # what the CLI prints
    lo, hi = body["ope"]["dr"]["ci95"]
    assert lo <= hi


async def test_canary_view_shows_verdicts_and_the_controllers_rollbacks(api: Api) -> None:
    runtime = api.runtime
    flag = runtime.canary.flag
    await set_flag(api, flag, enabled=True, rollout_fraction=0.5)
    recorded = await runtime.canary.tick()
    assert recorded is not None and recorded["verdict"] == "hold"  # no traffic: insufficient data
    await runtime.flags.set(flag, actor=ACTOR, reason="automatic rollback (test)", rollout=0.0)

    body = (await api.client.get("/api/v1/admin/dashboard/canary", headers=api.headers())).json()
    assert body["status"]["flag"] == flag and body["status"]["rollout_fraction"] == 0.0
    [evaluation] = body["evaluations"]
    assert evaluation["verdict"] == "hold" and "insufficient data" in evaluation["detail"]["reasons"][0]
    [action] = body["actions"]  # the operator's change is in the audit, but it is not the controller's
    assert action["actor"] == ACTOR and action["reason"] == "automatic rollback (test)"
    assert action["new"]["rollout_fraction"] == 0.0
