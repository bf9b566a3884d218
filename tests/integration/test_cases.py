"""Case memory on both backends: feedback makes a case; a near-duplicate question then ranks the rewarded
passage first and drops one marked irrelevant; no case reaches another collection or a viewer outside the
access groups of what it judged; with no close case the ranking is exactly the one without cases; a
deleted document leaves the cases; the selector's batch update is read by another runtime on the same
database; judgements import from BEIR files; an admin can wipe a collection's cases (over the API too,
audited); decisions log their propensities and off-policy evaluation weighs them with the feedback."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys

import pytest
from sqlalchemy import func, select

from apps.api.dashboard import views
from apps.core.api_keys import Scope
from apps.core.config import Settings
from apps.core.models import Case, CaseChunk, CaseDecision
from apps.core.visibility import EVERYTHING, Visibility
from apps.ingestion.documents import SourceDocument
from apps.orchestration.src import case_ope
from apps.runtime import Runtime, build_runtime
from apps.search.cases.features import BASE_FEATURES, FEATURES
from apps.search.cases.model import CollectionModel, Logistic, SelectorParameters
from apps.search.cases.types import CaseQuery
from apps.search.types import SearchFilters
from tests.support.api import Api, api_client

DOCS = [
    SourceDocument(external_id="eiffel-build", title="Eiffel Tower construction",
                   text="The Eiffel Tower was built between 1887 and 1889 by the company of Gustave Eiffel for the "
                        "World's Fair in Paris."),
    SourceDocument(external_id="eiffel-height", title="Eiffel Tower height",
                   text="The Eiffel Tower is 330 metres tall; it was the tallest structure in the world until 1930."),
    SourceDocument(external_id="liberty", title="Statue of Liberty",
                   text="The Statue of Liberty is a copper statue in New York, designed by Frederic Bartholdi and "
                        "dedicated in 1886."),
    SourceDocument(external_id="louvre", title="The Louvre",
                   text="The Louvre in Paris is the world's most visited museum; it holds the Mona Lisa."),
    SourceDocument(external_id="vitamin", title="Vitamin D",
                   text="Sunlight helps the skin produce vitamin D; a deficiency is associated with bone loss."),
    SourceDocument(external_id="sejong", title="세종대왕",
                   text="세종대왕은 조선의 제4대 왕이다. 세종대왕은 1443년에 훈민정음을 창제하였다."),
]
QUESTION = "Which company built the Eiffel Tower in Paris?"
AGAIN = "which company built the Eiffel Tower in Paris"


@pytest.fixture
async def loaded(runtime: Runtime) -> Runtime:
    await runtime.ingestion.ingest(DOCS)
    return runtime


def ids(result) -> list[str]:
    return [h.external_id for h in result.hits]


async def served(rt: Runtime, q: str, request_id: str, filters: SearchFilters | None = None, top_k: int = 5):
    return await rt.search.search(q, top_k=top_k, filters=filters, strategy="hybrid_cc",
                                  cases=CaseQuery(request_id, "search"))


async def chunk_of(rt: Runtime, result, external_id: str) -> int:
    return next(h.chunk_id for h in result.hits if h.external_id == external_id)


async def test_feedback_makes_a_case_and_a_near_duplicate_ranks_the_rewarded_passage_first(loaded: Runtime) -> None:
    first = await served(loaded, QUESTION, "r-1")
    assert first.cases == {"selector_version": None, "rule": None, "case_ids": [], "changed": False}
    assert ids(first)[0] == "eiffel-build"
    rewarded = await chunk_of(loaded, first, "louvre")  # the user says this one answered them
    [case_id] = await loaded.cases.from_feedback(None, "r-1", {"relevant_chunk_ids": [rewarded], "rating": 1})
    shown = await loaded.cases.store.get(case_id)
    assert shown["query"] == QUESTION and shown["origin"] == "feedback" and shown["reward"] == 1.0
    judged = {p["chunk_id"]: (p["judgement"], p["shown_rank"]) for p in shown["passages"]}
    assert judged[rewarded] == (1.0, ids(first).index("louvre") + 1)
    assert sorted(judged) == sorted(h.chunk_id for h in first.hits)  # the rest: shown, not judged

    again = await served(loaded, AGAIN, "r-2")
    assert ids(again)[0] == "louvre" and again.cases["changed"] and again.cases["rule"]
    assert again.hits[0].case_ids == [case_id] and again.hits[0].ranks["cases"] == 1
    assert all(h.case_ids == [] and h.ranks["cases"] is None for h in again.hits[1:])
    # The same passages, in the plain ranking's scores by position: a descending list.
    assert sorted(ids(again)) == sorted(ids(first))
    assert [h.score for h in again.hits] == sorted((h.score for h in again.hits), reverse=True)

    # Feedback for a request not served with case memory on, or from another key, makes no case.
    await loaded.search.search(QUESTION, strategy="hybrid_cc")
    assert await loaded.cases.from_feedback(None, "never-logged", {"relevant_chunk_ids": [rewarded]}) == []
    assert await loaded.cases.from_feedback("someone-else", "r-2", {"relevant_chunk_ids": [rewarded]}) == []
    # A passage the request did not show cannot be judged into a case.
    everything = await loaded.search.search(AGAIN, top_k=20, strategy="hybrid_cc")
    stranger = next(h.chunk_id for h in everything.hits if h.chunk_id not in {x.chunk_id for x in again.hits})
    [again_case] = await loaded.cases.from_feedback(None, "r-2", {"relevant_chunk_ids": [stranger]})
    assert all(p["judgement"] == 0 for p in (await loaded.cases.store.get(again_case))["passages"])


async def test_a_passage_marked_irrelevant_drops(loaded: Runtime) -> None:
    first = await served(loaded, QUESTION, "n-1")
    top = first.hits[0].chunk_id
    await loaded.cases.from_feedback(None, "n-1", {"irrelevant_chunk_ids": [top], "rating": -1})
    again = await served(loaded, AGAIN, "n-2")
    assert again.cases["changed"] and again.hits[0].chunk_id != top
    assert top not in [h.chunk_id for h in again.hits[:4]]
    plain = await loaded.search.search(AGAIN, top_k=5, strategy="hybrid_cc")
    assert [h.chunk_id for h in again.hits[:4]] == [h.chunk_id for h in plain.hits if h.chunk_id != top][:4]


async def test_with_no_close_case_the_ranking_is_the_plain_one(loaded: Runtime) -> None:
    first = await served(loaded, QUESTION, "p-1")
    await loaded.cases.from_feedback(None, "p-1", {"relevant_chunk_ids": [await chunk_of(loaded, first, "louvre")]})
    for q in ("vitamin D and bone loss", "세종대왕은 언제 훈민정음을 창제했나", "Statue of Liberty designer",
              "How tall is the Eiffel Tower?"):
        for strategy in ("bm25", "dense", "hybrid_rrf", "hybrid_cc"):
            plain = await loaded.search.search(q, top_k=6, strategy=strategy)
            with_cases = await loaded.search.search(q, top_k=6, strategy=strategy, cases=CaseQuery(f"p-{q}", "search"))
            assert [(h.chunk_id, h.score) for h in with_cases.hits] == [(h.chunk_id, h.score) for h in plain.hits]
            assert not with_cases.cases["changed"] and all(h.case_ids == [] for h in with_cases.hits)


async def test_no_case_crosses_collections_or_access_groups(loaded: Runtime) -> None:
    await loaded.collections.create("other")
    await loaded.ingestion.ingest([SourceDocument(**{**vars(d), "collection": "other"}) for d in DOCS]
                                  + [SourceDocument(external_id="payroll", title="Eiffel Tower staff payroll",
                                                    text="Which company built the Eiffel Tower in Paris pays its "
                                                         "guides monthly.", collection="other",
                                                    access_groups=("hr",))])
    other = Visibility(frozenset({"other"}), None)
    first = await served(loaded, QUESTION, "c-1", SearchFilters(visibility=other))
    await loaded.cases.from_feedback(None, "c-1", {"relevant_chunk_ids": [await chunk_of(loaded, first, "louvre")]})
    # The case is in `other`: a search of `default` is the plain one.
    default = SearchFilters(visibility=Visibility(frozenset({"default"}), None))
    plain = await loaded.search.search(AGAIN, top_k=5, filters=default, strategy="hybrid_cc")
    kept = await served(loaded, AGAIN, "c-2", default)
    assert ids(kept) == ids(plain) and kept.cases["case_ids"] == [] and not kept.cases["changed"]
    assert {h.collection for h in kept.hits} == {"default"}
    # Within `other` it is used.
    assert ids(await served(loaded, AGAIN, "c-3", SearchFilters(visibility=other)))[0] == "louvre"

    # A case that judged a passage of the hr group is not used by a viewer outside it, even for a passage
    # the viewer may see.
    admin = await served(loaded, QUESTION, "g-1", SearchFilters(visibility=other), top_k=8)
    assert "payroll" in ids(admin)
    await loaded.cases.wipe("other")
    await loaded.cases.from_feedback(None, "g-1", {"relevant_chunk_ids": [await chunk_of(loaded, admin, "payroll"),
                                                                          await chunk_of(loaded, admin, "liberty")]})
    outsider = SearchFilters(visibility=Visibility(frozenset({"other"}), frozenset({"sales"})))
    plain = await loaded.search.search(AGAIN, top_k=5, filters=outsider, strategy="hybrid_cc")
    seen = await served(loaded, AGAIN, "g-2", outsider)
    assert ids(seen) == ids(plain) and "payroll" not in ids(seen) and seen.cases["case_ids"] == []
    insider = SearchFilters(visibility=Visibility(frozenset({"other"}), frozenset({"hr"})))
    assert (await served(loaded, AGAIN, "g-3", insider)).cases["case_ids"] != []


async def test_a_deleted_document_leaves_every_case_and_a_wipe_empties_the_collection(loaded: Runtime) -> None:
    first = await served(loaded, QUESTION, "d-1")
    louvre = await chunk_of(loaded, first, "louvre")
    [case_id] = await loaded.cases.from_feedback(None, "d-1", {"relevant_chunk_ids": [louvre]})
    doc_id = first.hits[[h.chunk_id for h in first.hits].index(louvre)].doc_id
    assert await loaded.store.delete_document(doc_id, EVERYTHING)
    passages = (await loaded.cases.store.get(case_id))["passages"]
    assert louvre not in [p["chunk_id"] for p in passages] and passages
    assert ids(await served(loaded, AGAIN, "d-2"))[0] != "louvre"
    assert await loaded.cases.wipe("default") == 1
    async with loaded.engine.connect() as conn:
        assert (await conn.execute(select(func.count()).select_from(Case))).scalar_one() == 0
        assert (await conn.execute(select(func.count()).select_from(CaseChunk))).scalar_one() == 0
    # Decisions were logged for every request served with case memory on.
    await loaded.cases.leg.flush()
    async with loaded.engine.connect() as conn:
        assert (await conn.execute(select(func.count()).select_from(CaseDecision))).scalar_one() == 2


def _history() -> tuple[dict[str, str], dict[str, dict[str, int]]]:
    """Paraphrased questions about the documents: two per aspect of the Eiffel Tower share its words."""
    asked = {
        "eiffel-build": ["Who built the Eiffel Tower?", "Which company built the Eiffel Tower?",
                         "Who constructed the Eiffel Tower in Paris?", "When was the Eiffel Tower built?",
                         "Eiffel Tower builder and construction years"],
        "eiffel-height": ["How tall is the Eiffel Tower?", "What is the height of the Eiffel Tower?",
                          "Eiffel Tower height in metres", "Was the Eiffel Tower the tallest structure?",
                          "How many metres tall is the Eiffel Tower?"],
        "liberty": ["Who designed the Statue of Liberty?", "What is the Statue of Liberty made of?",
                    "When was the Statue of Liberty dedicated?", "Statue of Liberty designer"],
        "louvre": ["Which museum holds the Mona Lisa?", "What is the most visited museum in Paris?",
                   "Where is the Mona Lisa?", "Louvre museum Paris visitors"],
        "vitamin": ["How does the skin produce vitamin D?", "What does vitamin D deficiency cause?",
                    "Sunlight and vitamin D", "Is vitamin D deficiency linked to bone loss?"],
    }
    queries, qrels = {}, {}
    for doc, questions in asked.items():
        for i, q in enumerate(questions):
            queries[f"{doc}-{i}"] = q
            qrels[f"{doc}-{i}"] = {doc: 1}
    qrels["liberty-0"]["louvre"] = 0  # judged irrelevant
    return queries, qrels


async def test_import_from_qrels_and_a_batch_update_every_runtime_reads(loaded: Runtime, settings: Settings) -> None:
    queries, qrels = _history()
    qrels["unknown"] = {"not-a-document": 1}
    queries["unknown"] = "A question about nothing stored"
    report = await loaded.cases.import_judgements("default", queries, qrels, "hybrid_cc")
    assert (report.cases, report.without_documents, report.missing_documents) == (len(queries) - 1, 1, 1)
    listed = await loaded.cases.store.listing(limit=100)
    assert len(listed) == len(queries) - 1 and {r["origin"] for r in listed} == {"import"}
    liberty = next(r for r in listed if r["query"] == queries["liberty-0"])
    assert (liberty["relevant"], liberty["irrelevant"]) == (1, 1)
    # Re-importing replaces, never duplicates.
    assert (await loaded.cases.import_judgements("default", queries, qrels, "hybrid_cc")).cases == len(queries) - 1
    assert len(await loaded.cases.store.listing(limit=100)) == len(queries) - 1

    other = build_runtime(settings)
    try:
        await other.cases.selector.refresh(force=True)
        before = other.cases.selector.parameters
        report = await loaded.cases.train()
        assert report["version"] == before.version + 1
        trained = report["collections"]["default"]
        assert trained["cases"] == len(queries) - 1 and trained["examples"] > 0
        await other.cases.selector.refresh(force=True)
        after = other.cases.selector.parameters
        assert after.version == report["version"] and after != before
        model = after.collections["default"]
        assert model.base_for("hybrid_cc") is not None  # the plain ranking's curve was fitted
        assert after.to_json() == loaded.cases.selector.parameters.to_json()
        # Served decisions name the version that scored them.
        result = await other.search.search(queries["louvre-0"], top_k=3, strategy="hybrid_cc",
                                           cases=CaseQuery("v-1", "search"))
        assert result.cases["selector_version"] == after.version and ids(result)[0] == "louvre"
    finally:
        await other.close()


@pytest.fixture
async def api(settings: Settings):
    async with api_client(settings) as client:
        await client.runtime.ingestion.ingest(DOCS)
        yield client


async def test_the_api_serves_cases_and_feedback_makes_them(api: Api) -> None:
    headers = api.headers("read")
    off = await api.client.post("/api/v1/search", headers=headers, json={"q": QUESTION, "strategy": "hybrid_cc"})
    assert off.status_code == 200 and off.json()["cases"] is None and off.json()["hits"][0]["case_ids"] is None
    # Not served with case memory (nor a bandit decision or a conversation): nothing to attach feedback to.
    assert (await api.client.post("/api/v1/feedback", headers=headers,
                                  json={"request_id": off.json()["request_id"], "rating": 1})).status_code == 404
    flag = await api.client.put("/api/v1/admin/feature-flags/neural_case_selector", headers=api.headers(),
                                json={"reason": "test", "enabled": True})
    assert flag.status_code == 200, flag.text
    first = (await api.client.post("/api/v1/search", headers=headers,
                                   json={"q": QUESTION, "strategy": "hybrid_cc"})).json()
    assert first["cases"]["changed"] is False and all(h["case_ids"] == [] for h in first["hits"])
    louvre = next(h["chunk_id"] for h in first["hits"] if h["title"] == "The Louvre")
    marked = await api.client.post("/api/v1/feedback", headers=headers,
                                   json={"request_id": first["request_id"], "relevant_chunk_ids": [louvre]})
    assert marked.status_code == 200, marked.text
    # Another key cannot judge this key's request.
    assert (await api.client.post("/api/v1/feedback", headers=api.headers("write"),
                                  json={"request_id": first["request_id"], "rating": 1})).status_code == 404
    again = (await api.client.post("/api/v1/search", headers=headers,
                                   json={"q": AGAIN, "strategy": "hybrid_cc"})).json()
    assert again["hits"][0]["chunk_id"] == louvre and again["hits"][0]["ranks"]["cases"] == 1
    assert again["hits"][0]["case_ids"] == again["cases"]["case_ids"] and again["cases"]["changed"]
    answered = await api.client.post("/api/v1/answer", headers=headers, json={"q": AGAIN, "strategy": "hybrid_cc"})
    assert answered.status_code == 200, answered.text
    body = answered.json()
    assert body["cases"]["changed"] and body["sources"][0]["chunk_id"] == louvre
    assert body["sources"][0]["case_ids"] == again["cases"]["case_ids"]
    await api.runtime.cases.leg.flush()
    learning = (await api.client.get("/api/v1/admin/dashboard/learning", headers=api.headers())).json()["cases"]
    assert learning["cases"] == 1 and learning["by_collection"] == {"default": 1}
    assert (learning["requests"], learning["changed"], learning["hit_rate"]) == (3, 2, 0.6667)
    metrics = (await api.client.get("/metrics", headers=api.headers())).text
    assert "dtrag_case_hits_total" in metrics and 'dtrag_case_lookups_total{outcome="changed"}' in metrics


async def test_feedback_on_a_split_question_makes_a_case_of_each_part(api: Api) -> None:
    headers = api.headers("read")
    flag = await api.client.put("/api/v1/admin/feature-flags/neural_case_selector", headers=api.headers(),
                                json={"reason": "test", "enabled": True})
    assert flag.status_code == 200, flag.text
    asked = await api.client.post("/api/v1/search", headers=headers, json={
        "q": "Which company built the Eiffel Tower and who designed the Statue of Liberty?", "plan": True,
        "strategy": "hybrid_cc"})
    assert asked.status_code == 200, asked.text
    hits = {h["title"]: h["chunk_id"] for h in asked.json()["hits"]}
    marked = await api.client.post("/api/v1/feedback", headers=headers, json={
        "request_id": asked.json()["request_id"],
        "relevant_chunk_ids": [hits["Eiffel Tower construction"], hits["Statue of Liberty"]]})
    assert marked.status_code == 200, marked.text
    async with api.runtime.sessions() as session:
        cases = (await session.execute(select(Case.query).order_by(Case.query))).scalars().all()
    assert cases == ["Which company built the Eiffel Tower?", "Who designed the Statue of Liberty?"]


async def test_an_admin_wipes_a_collections_cases_over_the_api_audited(api: Api) -> None:
    queries, qrels = _history()
    made = (await api.runtime.cases.import_judgements("default", queries, qrels)).cases
    assert made == len(queries)
    path = "/api/v1/admin/collections/default/cases"
    assert (await api.client.delete(path)).status_code == 401
    for scope in ("read", "write"):
        assert (await api.client.delete(path, headers=api.headers(scope))).status_code == 403
    # An admin key bound to another collection may not touch this one's; an unknown collection is a 404.
    _, bound = await api.runtime.keys.create(Scope.admin, name="bound-admin", collections=["other"])
    assert (await api.client.delete(path, headers={"X-API-Key": bound})).status_code == 404
    assert (await api.client.delete("/api/v1/admin/collections/nowhere/cases",
                                    headers=api.headers())).status_code == 404
    assert len(await api.runtime.cases.store.listing(limit=100)) == made  # nothing went yet

    wiped = await api.client.delete(path, headers=api.headers())
    assert wiped.status_code == 200, wiped.text
    assert wiped.json()["wiped"] == made and wiped.json()["collection"] == "default"
    assert await api.runtime.cases.store.listing(limit=100) == []
    # The runbook path is the same handler: nothing is left to wipe.
    again = await api.client.delete("/api/admin/collections/default/cases", headers=api.headers())
    assert again.status_code == 200 and again.json()["wiped"] == 0
    trail = (await api.client.get("/api/v1/admin/actions", headers=api.headers())).json()
    wipes = [a for a in trail if a["action"] == "cases-wipe"]
    assert [a["detail"] for a in wipes] == [{"collection": "default", "wiped": 0},
                                            {"collection": "default", "wiped": made}]
    assert wipes[1]["id"] == wiped.json()["action_id"] and wipes[1]["actor"].startswith("api-key:")


async def test_decisions_log_propensities_that_off_policy_evaluation_weighs_with_feedback(
        loaded: Runtime, settings: Settings) -> None:
    first = await served(loaded, QUESTION, "o-1")
    louvre = await chunk_of(loaded, first, "louvre")
    await loaded.cases.from_feedback(None, "o-1", {"relevant_chunk_ids": [louvre]})
    # Served before any of their feedback (so by the one case): the rule admits the passage for the
    # near-duplicates, holds it back for a question that is only close, and never explores.
    near = [await served(loaded, q, f"o-{i}") for i, q in ((2, AGAIN), (3, "Which company built the Eiffel Tower?"))]
    held = await served(loaded, "Who built the Eiffel Tower?", "o-4")
    unrated = await served(loaded, AGAIN, "o-5")
    assert all(r.hits[0].chunk_id == louvre for r in [*near, unrated]) and held.hits[0].chunk_id != louvre
    assert louvre in [h.chunk_id for h in held.hits]
    await loaded.cases.leg.flush()
    async with loaded.engine.connect() as conn:
        logged = {r.request_id: [c for c in r.candidates if c["judgement"] > 0]
                  for r in await conn.execute(select(CaseDecision.request_id, CaseDecision.candidates))}
    assert [(c["mu"], c["admitted"]) for rid in ("o-2", "o-3", "o-4") for c in logged[rid]] == [
        (1.0, True), (1.0, True), (0.0, False)]
    assert 0 < logged["o-4"][0]["base"] < 1  # the plain ranking's probability at its place
    # Users disagree with the cases twice; the held-back passage is marked relevant where the plain ranking
    # showed it, which the cases did not do: no reward of theirs.
    for rid in ("o-2", "o-3"):
        await loaded.cases.from_feedback(None, rid, {"irrelevant_chunk_ids": [louvre]})
    await loaded.cases.from_feedback(None, "o-4", {"relevant_chunk_ids": [louvre]})

    store, thresholds = loaded.cases.store, loaded.cases.selector.thresholds
    rule = await case_ope.evaluate_selector(store, await case_ope.target_parameters(store, "rule"), thresholds,
                                            bootstrap=50)
    assert (rule["requests"], rule["n"], rule["admitted"], rule["explored"]) == (3, 3, 2, 0)
    assert rule["logged_mean_reward"] == round(-2 / 3, 4) and rule["ips"]["value"] == round(-2 / 3, 4)
    assert (rule["agreement"], rule["unsupported"]) == (1.0, 0)
    # A selector that admits every passage a close case vouches for: it would have admitted the held-back
    # one too, which the log cannot price (the rule never tried it), and is said so.
    eager = SelectorParameters(9, FEATURES, BASE_FEATURES, {"default": CollectionModel(
        Logistic((0.0,) * len(FEATURES), 10.0), {"*": Logistic((0.0,) * len(BASE_FEATURES), -10.0)}, 1)})
    assert eager.model_for("default", FEATURES, BASE_FEATURES) is not None
    everything = await case_ope.evaluate_selector(store, eager, thresholds, bootstrap=50)
    assert (everything["target_admits"], everything["unsupported"], everything["agreement"]) == (3, 1, 0.6667)
    assert everything["ips"]["value"] == round(-2 / 3, 4) and everything["version"] == 9
    assert (await case_ope.evaluate_selector(store, eager, thresholds, collection="other"))["n"] == 0
    # The dashboard's learning view and `dtrag cases ope` show the newest selector's (here: the rule's).
    learning = await views.learning(loaded, 5)
    assert learning["cases"]["ope"]["n"] == 3 and learning["cases"]["ope"]["ips"] == rule["ips"]
    cli = await asyncio.to_thread(
        subprocess.run, [sys.executable, "-m", "apps.cli.main", "cases", "ope", "--json"], capture_output=True,
        text=True, timeout=300, check=False, env={**os.environ, "DATABASE_URL": settings.database_url})
    assert cli.returncode == 0, cli.stderr
    shown = json.loads(cli.stdout)
    assert (shown["target"], shown["n"], shown["ips"]["value"]) == ("current", 3, round(-2 / 3, 4))
