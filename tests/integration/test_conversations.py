"""Conversations through the API, on both backends: a follow-up is rewritten into a standalone question
against the conversation's last turn and finds what that question finds; turns are stored, bounded,
scoped to their key and pruned; feedback rows are merged per key and request, the answer's rating is the
bandit's reward and the marked passages are kept; the dashboard's learning view counts them. With a model
answer provider, the model's rewrite is used when it is valid and the rules' otherwise."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
from sqlalchemy import select, update

from apps.core.config import Settings
from apps.core.models import BanditDecision, Conversation, Feedback, utcnow
from apps.core.retention import Retention
from apps.ingestion.documents import SourceDocument
from tests.support.api import Api, api_client
from tests.support.corpus import LANDMARKS
from tests.support.fake_chat import FakeChat, Reply

DOCS = [
    *LANDMARKS,
    SourceDocument(external_id="hangul", title="거북선",
                   text="거북선은 조선 수군의 돌격선이다. 이순신이 임진왜란 때 거북선을 만들어 싸웠다."),
]


@pytest.fixture
async def api(settings: Settings):
    async with api_client(settings.model_copy(update={"conversation_max_turns": 3})) as client:
        await client.runtime.ingestion.ingest(DOCS)
        yield client


async def conversation(api: Api, scope: str = "read") -> str:
    response = await api.client.post("/api/v1/conversations", headers=api.headers(scope))
    assert response.status_code == 201, response.text
    return response.json()["id"]


async def answer(api: Api, q: str, conversation_id: str | None = None, scope: str = "read", **body) -> dict:
    payload = {"q": q, **body, **({"conversation_id": conversation_id} if conversation_id else {})}
    response = await api.client.post("/api/v1/answer", headers=api.headers(scope), json=payload)
    assert response.status_code == 200, response.text
    return response.json()


async def set_flag(api: Api, name: str, **body) -> None:
    response = await api.client.put(f"/api/v1/admin/feature-flags/{name}", headers=api.headers(),
                                    json={"reason": "test", **body})
    assert response.status_code == 200, response.text


async def test_a_follow_up_is_answered_as_the_standalone_question_its_history_makes_it(api: Api) -> None:
    liberty = await conversation(api)
    first = await answer(api, "Who designed the Statue of Liberty?", liberty)
    assert first["conversation_id"] == liberty and first["rewritten_question"] is None
    follow = await answer(api, "When was it built?", liberty)
    assert follow["question"] == "When was it built?"
    assert follow["rewritten_question"] == "When was the Statue of Liberty built?"
    assert follow["sources"][0]["title"] == "Statue of Liberty"

    # The same words after another subject find that subject: the history, not the words, decides.
    eiffel = await conversation(api)
    await answer(api, "How tall is the Eiffel Tower?", eiffel)
    other = await answer(api, "When was it built?", eiffel)
    assert other["rewritten_question"] == "When was the Eiffel Tower built?"
    assert other["sources"][0]["title"] == "Eiffel Tower"

    # Korean: an elliptical follow-up gets the earlier subject; a question that stands alone is untouched.
    korean = await conversation(api)
    await answer(api, "세종대왕은 조선의 몇 대 왕인가?", korean)
    ellipsis = await answer(api, "그가 창제한 문자는?", korean)
    assert ellipsis["rewritten_question"] == "세종대왕이 창제한 문자는?"
    assert ellipsis["sources"][0]["title"] == "세종대왕"
    alone = await answer(api, "거북선을 만든 사람은?", korean)
    assert alone["rewritten_question"] is None and alone["sources"][0]["title"] == "거북선"

    # Without a conversation nothing is rewritten.
    assert (await answer(api, "When was it built?"))["rewritten_question"] is None

    stored = (await api.client.get(f"/api/v1/conversations/{liberty}", headers=api.headers("read"))).json()
    assert [t["question"] for t in stored["items"]] == ["Who designed the Statue of Liberty?", "When was it built?"]
    assert stored["items"][0]["rewritten"] is None and stored["items"][0]["subject"] == "the Statue of Liberty"
    assert stored["items"][1]["rewritten"] == "When was the Statue of Liberty built?"
    assert stored["items"][1]["request_id"] == follow["request_id"] and stored["items"][1]["answer"] == follow["answer"]
    assert stored["items"][1]["sources"][0]["title"] == "Statue of Liberty" and stored["items"][1]["feedback"] is None
    assert stored["title"] == "Who designed the Statue of Liberty?" and stored["turns"] == 2
    listed = (await api.client.get("/api/v1/conversations", headers=api.headers("read"))).json()
    assert [c["id"] for c in listed] == [korean, eiffel, liberty] and listed[0]["turns"] == 3


async def test_a_conversation_is_its_keys_alone(api: Api) -> None:
    mine = await conversation(api, "read")
    await answer(api, "How tall is the Eiffel Tower?", mine)
    path = f"/api/v1/conversations/{mine}"
    other = api.headers("write")
    assert (await api.client.get(path, headers=other)).status_code == 404
    assert (await api.client.delete(path, headers=other)).status_code == 404
    for route in ("/api/v1/answer", "/api/v1/search"):
        refused = await api.client.post(route, headers=other, json={"q": "When was it built?", "conversation_id": mine})
        assert refused.status_code == 404 and "no conversation" in refused.json()["detail"]
    assert (await api.client.get("/api/v1/conversations", headers=other)).json() == []
    assert (await api.client.get(path, headers={})).status_code == 401
    for bad in ("nope", "A" * 32):
        assert (await api.client.get(f"/api/v1/conversations/{bad}", headers=api.headers("read"))).status_code == 422
        response = await api.client.post("/api/v1/answer", headers=api.headers("read"),
                                         json={"q": "hello", "conversation_id": bad})
        assert response.status_code == 422
    assert (await api.client.delete(path, headers=api.headers("read"))).status_code == 204
    assert (await api.client.get(path, headers=api.headers("read"))).status_code == 404
    gone = await api.client.post("/api/v1/answer", headers=api.headers("read"),
                                 json={"q": "hi", "conversation_id": mine})
    assert gone.status_code == 404


async def test_search_and_streamed_answers_are_turns_too(api: Api) -> None:
    cid = await conversation(api)
    await answer(api, "Who designed the Statue of Liberty?", cid)
    search = await api.client.post("/api/v1/search", headers=api.headers("read"),
                                   json={"q": "When was it dedicated?", "conversation_id": cid})
    body = search.json()
    assert search.status_code == 200 and body["conversation_id"] == cid
    assert body["rewritten_question"] == "When was the Statue of Liberty dedicated?"
    assert body["hits"][0]["title"] == "Statue of Liberty"

    async with api.client.stream("POST", "/api/v1/answer", headers=api.headers("read"),
                                 json={"q": "Who designed it?", "conversation_id": cid, "stream": True}) as stream:
        text = "".join([chunk async for chunk in stream.aiter_text()])
    events = [(block.split("\n")[0].removeprefix("event: "), json.loads(block.split("\n")[1].removeprefix("data: ")))
              for block in text.strip().split("\n\n")]
    names = [name for name, _ in events]
    assert names[0] == "rewritten" and "token" in names and names[-1] == "final"
    assert events[0][1] == {"question": "Who designed the Statue of Liberty?", "by": "rule"}
    final = events[-1][1]
    assert final["conversation_id"] == cid and final["rewritten_question"] == "Who designed the Statue of Liberty?"

    stored = (await api.client.get(f"/api/v1/conversations/{cid}", headers=api.headers("read"))).json()
    assert [t["endpoint"] for t in stored["items"]] == ["answer", "search", "answer"]
    assert stored["items"][1]["question"] == "When was it dedicated?"
    assert stored["items"][1]["rewritten"] == "When was the Statue of Liberty dedicated?"
    assert stored["items"][2]["request_id"] == final["request_id"]


async def test_history_is_bounded_and_retention_prunes_idle_conversations(api: Api, settings: Settings) -> None:
    cid = await conversation(api)
    questions = [f"How tall is the Eiffel Tower {i}?" for i in range(5)]
    for q in questions:
        response = await api.client.post("/api/v1/search", headers=api.headers("read"),
                                         json={"q": q, "conversation_id": cid})
        assert response.status_code == 200
    stored = (await api.client.get(f"/api/v1/conversations/{cid}", headers=api.headers("read"))).json()
    assert [t["question"] for t in stored["items"]] == questions[-3:]
    request_id = stored["items"][-1]["request_id"]
    assert (await api.client.post("/api/v1/feedback", headers=api.headers("read"),
                                  json={"request_id": request_id, "comment": "fine"})).status_code == 200
    kept = await conversation(api)

    engine = api.runtime.engine
    async with engine.begin() as conn:
        old = utcnow() - timedelta(days=31)
        await conn.execute(update(Conversation).where(Conversation.id == cid).values(updated_at=old))
        await conn.execute(update(Feedback).values(updated_at=utcnow() - timedelta(days=366)))
    deleted = await Retention(engine, settings, batch_size=2, pause_s=0).prune_once()
    assert (deleted["conversation_turns"], deleted["conversations"], deleted["feedback"]) == (3, 1, 1)
    assert (await api.client.get(f"/api/v1/conversations/{cid}", headers=api.headers("read"))).status_code == 404
    assert (await api.client.get(f"/api/v1/conversations/{kept}", headers=api.headers("read"))).status_code == 200


async def feedback(api: Api, scope: str = "read", **body):
    return await api.client.post("/api/v1/feedback", headers=api.headers(scope), json=body)


async def row(api: Api, request_id: str) -> Feedback:
    async with api.runtime.engine.connect() as conn:
        return (await conn.execute(select(Feedback).where(Feedback.request_id == request_id))).one()


async def test_feedback_is_kept_per_request_and_the_answers_rating_is_the_reward(api: Api) -> None:
    await set_flag(api, "soft_q_bandit", enabled=True)
    cid = await conversation(api)
    served = await answer(api, "What was built in Paris or in New York?", cid)
    rid = served["request_id"]
    chunks = [s["chunk_id"] for s in served["sources"]]
    assert len(chunks) >= 2

    marked = await feedback(api, request_id=rid, relevant_chunk_ids=[chunks[0]], irrelevant_chunk_ids=[chunks[1]])
    assert marked.status_code == 200 and marked.json()["reward"] is None  # passage marks are no reward
    decision = await api.runtime.bandit.decisions.get(rid)
    assert decision is not None and decision.reward is None

    rated = (await feedback(api, request_id=rid, rating=1)).json()
    assert rated["accepted"] and rated["reward"] is not None
    async with api.runtime.engine.connect() as conn:
        rewarded = (await conn.execute(select(BanditDecision).where(BanditDecision.request_id == rid))).one()
    assert rewarded.reward == rated["reward"] and rewarded.reward_source == "explicit"
    await feedback(api, request_id=rid, comment="Both are right.")
    stored = await row(api, rid)
    assert (stored.rating, stored.relevant_chunk_ids, stored.irrelevant_chunk_ids, stored.comment, stored.endpoint) == (
        1, [chunks[0]], [chunks[1]], "Both are right.", "answer")  # merged, not replaced

    # A change of mind is kept; the reward the bandit learned from stands.
    again = (await feedback(api, request_id=rid, rating=-1)).json()
    assert not again["accepted"] and again["reward"] == rated["reward"]
    assert (await row(api, rid)).rating == -1

    turns = (await api.client.get(f"/api/v1/conversations/{cid}", headers=api.headers("read"))).json()["items"]
    assert turns[0]["feedback"] == {"rating": -1.0, "helpful": None, "relevant_chunk_ids": [chunks[0]],
                                    "irrelevant_chunk_ids": [chunks[1]], "comment": "Both are right."}

    # Without a bandit decision (the flag off), a turn's feedback is still kept.
    await set_flag(api, "soft_q_bandit", enabled=False)
    plain = await answer(api, "Who designed the Statue of Liberty?", cid)
    kept = await feedback(api, request_id=plain["request_id"], helpful=True)
    assert kept.status_code == 200 and kept.json() == {"request_id": plain["request_id"], "reward": None,
                                                       "accepted": True, "learned": False}
    assert (await row(api, plain["request_id"])).helpful is True

    # Another key cannot reach this key's turn; unknown ids and empty feedback are refused.
    assert (await feedback(api, "write", request_id=plain["request_id"], rating=1)).status_code == 404
    missing = await feedback(api, request_id="nope", rating=1)
    assert missing.status_code == 404 and "no bandit decision" in missing.json()["detail"]
    for bad in ({"request_id": rid}, {"request_id": rid, "comment": "x" * 2001}, {"request_id": rid, "rating": 2}):
        assert (await feedback(api, **bad)).status_code == 422

    await api.runtime.request_log.flush()
    learning = (await api.client.get("/api/v1/admin/dashboard/learning", headers=api.headers())).json()["feedback"]
    assert learning["rows"] == 2 and learning["rated"] == 2 and learning["passages_marked"] == 1
    assert learning["comments"] == 1 and learning["answers"] == 2 and learning["answers_rated"] == 2
    assert learning["share_rated"] == 1.0


@pytest.fixture
def chat():
    server = FakeChat()
    yield server
    server.stop()


async def test_a_models_rewrite_is_used_when_valid_and_the_rules_otherwise(settings: Settings, chat: FakeChat) -> None:
    model = settings.model_copy(update={"answer_provider": "openai", "llm_base_url": chat.url, "llm_model": "fake-chat",
                                        "llm_api_key": "sk-test"})
    async with api_client(model) as api:
        await api.runtime.ingestion.ingest(DOCS)
        cid = await conversation(api)
        await answer(api, "Who designed the Statue of Liberty?", cid)
        chat.script = [Reply(text='Sure: {"question": "When was the Statue of Liberty built in France?"}')]
        used = await answer(api, "When was it built?", cid)
        assert used["rewritten_question"] == "When was the Statue of Liberty built in France?"  # not the rules'
        assert not used["degraded"]
        prompt = chat.requests[-2]["body"]["messages"][-1]["content"]
        assert "Who designed the Statue of Liberty?" in prompt and "When was it built?" in prompt
        # A rewrite that brings in what nobody asked, or no JSON: the rules' rewrite.
        for reply in ('{"question": "When was the Statue of Liberty built, and how much did the copper cost?"}',
                      '{"question": "When was the Statue of Liberty dedicated?"}',  # not what was asked
                      "It was built in 1886."):
            chat.script = [Reply(text=reply)]
            fallback = await answer(api, "Who paid for it?", cid)
            assert fallback["rewritten_question"] == "Who paid for the Statue of Liberty?"
        # A question that stands alone costs no model call.
        calls = len(chat.requests)
        await answer(api, "How tall is the Eiffel Tower?", cid)
        assert len(chat.requests) == calls + 1  # the composer's call alone
