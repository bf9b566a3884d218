"""The answer pipeline with the bandit and experience replay: decisions logged per request, feedback
joined to them, experiences replayed into the shared Q-table, answers rewarded by groundedness."""

from __future__ import annotations

import math

import pytest

from tests.support.api import Api, api_client
from tests.support.corpus import corpus


@pytest.fixture
async def api(settings):
    settings = settings.model_validate({**settings.model_dump(), "replay_learn_every": 2, "replay_batch_size": 4})
    async with api_client(settings) as client:
        await client.runtime.ingestion.ingest(corpus())
        yield client


async def set_flag(api: Api, name: str, **body) -> None:
    response = await api.client.put(f"/api/v1/admin/feature-flags/{name}", headers=api.headers(),
                                    json={"reason": "test", **body})
    assert response.status_code == 200, response.text


async def test_flag_off_serves_the_fixed_default_and_logs_nothing(api: Api) -> None:
    response = await api.client.post("/api/v1/search/", headers=api.headers("read"),
                                     json={"q": "vitamin D deficiency", "final_topk": 3})
    body = response.json()
    assert body["strategy"] == "hybrid_cc" and body["bandit"] is None
    assert response.headers["X-Pipeline-Variant"] == "legacy"
    feedback = await api.client.post("/api/v1/feedback", headers=api.headers("read"),
                                     json={"request_id": body["request_id"], "rating": 1})
    assert feedback.status_code == 404 and "no bandit decision" in feedback.json()["detail"]


async def test_bandit_decisions_are_logged_and_feedback_joins_them(api: Api) -> None:
    await set_flag(api, "soft_q_bandit", enabled=True)
    await set_flag(api, "experience_replay", enabled=True)
    runtime = api.runtime
    served = {}
    for i, q in enumerate(["vitamin D deficiency", "relational database indexes", "기계 학습 모델", "machine learning"]):
        response = await api.client.post("/api/v1/search/", headers={**api.headers("read"), "X-Request-ID": f"q{i}"},
                                         json={"q": q, "final_topk": 3})
        body = response.json()
        assert response.status_code == 200 and body["bandit"] is not None, body
        assert response.headers["X-Pipeline-Variant"] == "new"
        assert math.isclose(sum(body["bandit"]["probabilities"].values()), 1.0, abs_tol=1e-5)
        assert body["strategy"] in body["bandit"]["probabilities"]
        served[f"q{i}"] = body
    # Forcing a strategy is not a policy decision.
    forced = (await api.client.post("/api/v1/search/", headers={**api.headers("read"), "X-Request-ID": "forced"},
                                    json={"q": "vitamin", "strategy": "bm25"})).json()
    assert forced["bandit"] is None and forced["strategy"] == "bm25"

    first = await api.client.post("/api/v1/feedback", headers=api.headers("read"),
                                  json={"request_id": "q0", "rating": 0.8})
    assert first.status_code == 200 and first.json() == {"request_id": "q0", "reward": 0.8, "accepted": True,
                                                          "learned": True}
    again = await api.client.post("/api/v1/feedback", headers=api.headers("read"),
                                  json={"request_id": "q0", "rating": -1})
    assert again.json() == {"request_id": "q0", "reward": 0.8, "accepted": False, "learned": False}
    chunk = served["q1"]["hits"][0]["chunk_id"]
    relevant = await api.client.post("/api/v1/feedback", headers=api.headers("read"),
                                     json={"request_id": "q1", "relevant_chunk_ids": [chunk]})
    assert relevant.json()["reward"] == 1.0  # the marked chunk was served first: nDCG 1
    helpful = await api.client.post("/api/v1/feedback", headers=api.headers("read"),
                                    json={"request_id": "q2", "helpful": False})
    assert helpful.json()["reward"] == -1.0
    for bad in ({"request_id": "q3"}, {"request_id": "q3", "rating": 2}):
        response = await api.client.post("/api/v1/feedback", headers=api.headers("read"), json=bad)
        assert response.status_code == 422
    assert (await api.client.post("/api/v1/feedback", headers=api.headers("read"),
                                  json={"request_id": "nope", "rating": 1})).status_code == 404

    await runtime.bandit.drain()
    decisions = {r.request_id: r async for r in runtime.bandit.decisions.rewarded()}
    assert decisions["q0"].reward == 0.8 and decisions["q0"].action == served["q0"]["strategy"]
    assert decisions["q0"].state == served["q0"]["bandit"]["state"] and decisions["q0"].variant == "new"
    assert decisions["q0"].probabilities == served["q0"]["bandit"]["probabilities"]
    assert await runtime.bandit.replay.size() == 3
    await runtime.bandit.learner.refresh(force=True)
    assert runtime.bandit.learner.version >= 1 and runtime.bandit.learner.q_table  # batches ran (every 2)


async def test_implicit_reward_after_the_window_and_replay_off_stores_nothing(api: Api) -> None:
    runtime = api.runtime
    await set_flag(api, "soft_q_bandit", enabled=True)
    response = await api.client.post("/api/v1/search/", headers={**api.headers("read"), "X-Request-ID": "implicit"},
                                     json={"q": "vitamin D sunlight", "final_topk": 3})
    assert response.json()["bandit"] is not None
    await runtime.bandit.decisions.flush()
    runtime.bandit.settings = runtime.settings.model_validate({**runtime.settings.model_dump(),
                                                                "bandit_reward_window_s": 0})
    assert await runtime.bandit.settle() == 1
    [row] = [r async for r in runtime.bandit.decisions.rewarded()]
    assert row.reward_source == "implicit" and 0 < row.reward <= 1  # query terms found in the top hits
    assert await runtime.bandit.replay.size() == 0  # experience_replay is off: an online update instead
    await runtime.bandit.learner.refresh(force=True)
    assert runtime.bandit.learner.visits(row.state) == 1
    late = await api.client.post("/api/v1/feedback", headers=api.headers("read"),
                                 json={"request_id": "implicit", "rating": 1})
    assert late.json()["accepted"] is False
    # BANDIT_IMPLICIT_REWARD=none: a decision without feedback never becomes a reward.
    runtime.bandit.settings = runtime.bandit.settings.model_validate(
        {**runtime.bandit.settings.model_dump(), "bandit_implicit_reward": "none"})
    await api.client.post("/api/v1/search/", headers={**api.headers("read"), "X-Request-ID": "silent"},
                          json={"q": "vitamin D sunlight"})
    await runtime.bandit.decisions.flush()
    assert await runtime.bandit.settle() == 0
    assert (await runtime.bandit.decisions.get("silent")).implicit_reward is None


async def test_answers_use_the_bandit_and_report_groundedness_as_reward(api: Api) -> None:
    await set_flag(api, "soft_q_bandit", enabled=True)
    response = await api.client.post("/answer", headers={**api.headers("read"), "X-Request-ID": "answer-1"},
                                     json={"q": "What does vitamin D deficiency cause?"})
    assert response.status_code == 200 and response.headers["X-Pipeline-Variant"] == "new"
    row = await api.runtime.bandit.decisions.get("answer-1")
    assert row is not None and row.endpoint == "answer" and row.action == response.json()["strategy"]
    assert row.implicit_reward == pytest.approx(response.json()["confidence"], abs=1e-6)


