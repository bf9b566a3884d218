"""One check of a document's fields for every way it arrives (issue 21 items 2, 8, 9), both backends:
a JSON body, a multipart upload, a parsed file's title, a `dtrag ingest` file or BEIR line; new
metadata on the same text is applied without re-embedding; JSON nested too deep is a 4xx."""

from __future__ import annotations

import json

import pytest
from sqlalchemy import func, select

from apps.core.models import Chunk, Document
from apps.ingestion.documents import SourceDocument
from apps.ingestion.errors import IngestError
from apps.ingestion.loaders import load_bytes, load_file
from apps.ingestion.validation import TITLE_MAX_CHARS
from apps.runtime import Runtime
from apps.search.types import SearchFilters
from tests.support.api import Api, api_client
from tests.support.ingestion import SlowCountingEmbedder, service


@pytest.fixture
async def api(settings):
    async with api_client(settings) as client:
        yield client


async def _documents(rt: Runtime) -> int:
    async with rt.engine.connect() as conn:
        return (await conn.execute(select(func.count()).select_from(Document))).scalar_one()


def _upload(name: str, body: bytes, **form: str) -> dict:
    return {"files": {"file": (name, body, "text/plain")}, "data": form}


TOO_LONG = {"title": "t" * (TITLE_MAX_CHARS + 1), "external_id": "x" * 501, "taxonomy_path": "a/" + "b" * 1000}


@pytest.mark.parametrize(
    ("request_kwargs", "field"),
    [
        # multipart form fields: unchecked before (the title, the id, the path went through as sent)
        (_upload("a.txt", b"Some text.", title=TOO_LONG["title"]), "title"),
        (_upload("a.txt", b"Some text.", external_id=TOO_LONG["external_id"]), "external_id"),
        (_upload("a.txt", b"Some text.", taxonomy_path=TOO_LONG["taxonomy_path"]), "taxonomy_path"),
        (_upload("a.txt", b"Some text.", source_url="javascript:alert(document.cookie)"), "source_url"),
        (_upload("a.txt", b"Some text.", source_url="data:text/html,<script>alert(1)</script>"), "source_url"),
        (_upload("a.txt", b"Some text.", metadata=json.dumps({"bad key!": 1})), "metadata"),
        # a JSON body: the source URL's scheme was not checked
        ({"json": {"text": "Some text.", "source_url": "javascript:alert(1)"}}, "source_url"),
        ({"json": {"text": "Some text.", "source_url": "JaVaScRiPt:alert(1)"}}, "source_url"),
        ({"json": {"text": "Some text.", "source_url": "/relative/path"}}, "source_url"),
        ({"json": {"text": "Some text.", "source_url": "file:///etc/passwd"}}, "source_url"),
        ({"json": {"text": "Some text.", "external_id": TOO_LONG["external_id"]}}, "external_id"),
    ],
)
async def test_every_arrival_path_refuses_fields_over_the_limits(api: Api, request_kwargs, field) -> None:
    r = await api.client.post("/api/v1/documents?wait=true", headers=api.headers("write"), **request_kwargs)
    assert r.status_code == 422, r.text
    assert field in r.json()["detail"], r.json()["detail"]
    assert await _documents(api.runtime) == 0


async def test_a_good_upload_keeps_its_checked_fields(api: Api) -> None:
    r = await api.client.post("/api/v1/documents?wait=true", headers=api.headers("write"),
                              **_upload("a.txt", b"Some text about tea.", title="Tea", external_id="tea-1",
                                        source_url="https://example.org/tea", taxonomy_path=" food / drinks ",
                                        metadata=json.dumps({"team.a": {"nested": [1, 2]}})))
    assert r.status_code == 201, r.text
    doc = (await api.client.get(f"/api/v1/documents/{r.json()['document_id']}", headers=api.headers("read"))).json()
    assert (doc["title"], doc["external_id"], doc["source_url"], doc["taxonomy_path"], doc["metadata"]) == (
        "Tea", "tea-1", "https://example.org/tea", "food/drinks", {"team.a": {"nested": [1, 2]}})


@pytest.mark.parametrize(
    ("name", "body"),
    [("page.html", f"<html><head><title>{'Long title ' * 500}</title></head><body>Body text.</body></html>"),
     ("notes.md", f"# {'Heading words ' * 500}\n\nBody text.")],
)
async def test_parsed_titles_over_the_limit_are_cut(api: Api, name: str, body: str) -> None:
    """Nobody chose a parsed title, so it is cut rather than refused; it then travels with every chunk."""
    r = await api.client.post("/api/v1/documents?wait=true", headers=api.headers("write"),
                              files={"file": (name, body.encode(), "text/plain")})
    assert r.status_code == 201, r.text
    doc_id = r.json()["document_id"]
    doc = (await api.client.get(f"/api/v1/documents/{doc_id}", headers=api.headers("read"))).json()
    assert len(doc["title"]) == TITLE_MAX_CHARS and doc["title"].endswith("…")
    assert doc["title"].startswith("Long title" if name.endswith(".html") else "Heading words")
    async with api.runtime.engine.connect() as conn:
        token_count = (await conn.execute(select(Chunk.token_count).where(Chunk.document_id == doc_id))).scalar_one()
    assert token_count < 600  # ~5,500-character title before: over a thousand tokens in every chunk


async def test_corpus_lines_and_files_go_through_the_same_check(runtime: Runtime, tmp_path) -> None:
    """`dtrag ingest` and BEIR corpora: an id over the limit names its line before anything is embedded
    (on PostgreSQL it failed at the write, after embedding); titles are cut; files keep file: URLs."""
    counting = SlowCountingEmbedder(runtime.ingestion.embedder)
    ingestion = service(runtime, counting)
    lines = [{"_id": "ok-1", "title": "Fine", "text": "A fine corpus line about soil."},
             {"_id": "x" * 600, "title": "Bad id", "text": "This line's id is too long."},
             {"_id": "ok-2", "title": "T" * 3000, "text": "A line with a very long title."}]
    data = "\n".join(json.dumps(line) for line in lines).encode()
    docs = load_bytes("corpus.jsonl", data, 10**6)
    with pytest.raises(IngestError, match=r"corpus\.jsonl:2: external_id: String should have at most 500"):
        await ingestion.ingest(docs)
    assert counting.calls == [] and await _documents(runtime) == 0
    report = await ingestion.ingest(docs, skip_invalid=True)
    assert report.created == 2 and [e.source for e in report.skipped] == ["corpus.jsonl:2"]
    async with runtime.engine.connect() as conn:
        title = (await conn.execute(select(Document.title).where(Document.external_id == "ok-2"))).scalar_one()
    assert len(title) == TITLE_MAX_CHARS
    path = tmp_path / "guide.txt"
    path.write_text("Water the plants weekly.")
    report = await ingestion.ingest(load_file(path, 10**6))
    assert report.created == 1
    async with runtime.engine.connect() as conn:
        url = (await conn.execute(select(Document.source_url).where(Document.external_id == str(path)))).scalar_one()
    assert url == path.as_uri()
    with pytest.raises(IngestError, match="source_url"):
        await ingestion.ingest([SourceDocument(text="x", source_url="javascript:alert(1)", origin="py")])


async def test_new_metadata_on_the_same_text_is_applied_without_re_embedding(runtime: Runtime) -> None:
    counting = SlowCountingEmbedder(runtime.ingestion.embedder)
    ingestion = service(runtime, counting)
    doc = SourceDocument(external_id="tea", title="Tea", text="Green tea is unoxidised.", metadata={"team": "a"})
    first = await ingestion.ingest([doc])
    embedded = len(counting.calls)
    async with runtime.engine.connect() as conn:
        chunk_ids = (await conn.execute(select(Chunk.id).order_by(Chunk.id))).scalars().all()
    team_a = SearchFilters(metadata={"team": "a"})
    found = await runtime.search.search("green tea", filters=team_a, strategy="bm25", cacheable=True)
    assert [h.external_id for h in found.hits] == ["tea"]  # cached now: the update must invalidate it
    moved = SourceDocument(external_id="tea", title="Tea", text="Green tea is unoxidised.",
                           metadata={"team": "b", "year": 2024}, content_type="text/markdown")
    second = await ingestion.ingest([moved])
    assert (second.updated, second.unchanged, second.chunks) == (1, 0, 0)
    assert second.outcomes[0].status == "updated"
    assert second.outcomes[0].document_id == first.outcomes[0].document_id
    assert len(counting.calls) == embedded  # nothing re-embedded
    async with runtime.engine.connect() as conn:
        stored = (await conn.execute(select(Document.metadata_.label("meta"), Document.content_type))).one()
        assert (await conn.execute(select(Chunk.id).order_by(Chunk.id))).scalars().all() == chunk_ids
    assert (stored.meta, stored.content_type) == ({"team": "b", "year": 2024}, "text/markdown")
    assert (await runtime.search.search("green tea", filters=team_a, strategy="bm25", cacheable=True)).hits == []
    found = await runtime.search.search("green tea", filters=SearchFilters(metadata={"team": "b"}), strategy="bm25")
    assert [h.external_id for h in found.hits] == ["tea"]
    assert (await ingestion.ingest([moved])).unchanged == 1


async def test_new_metadata_racing_a_new_text_is_written_in_full(runtime: Runtime, monkeypatch) -> None:
    """Between our look (same text: metadata only) and our write, another writer stores another text:
    ours is then embedded and written whole, not left as metadata on the other text."""
    ours = SourceDocument(external_id="tea", text="Green tea is unoxidised.", metadata={"v": 2})
    await runtime.ingestion.ingest([SourceDocument(external_id="tea", text=ours.text, metadata={"v": 1})])
    original, raced = runtime.store.stored_documents, []

    async def racing(identities, conn=None):
        found = await original(identities, conn)
        if conn is None and not raced:  # our look, before the metadata write
            raced.append(True)
            await runtime.ingestion.ingest([SourceDocument(external_id="tea", text="Black tea is oxidised.")])
        return found

    monkeypatch.setattr(runtime.store, "stored_documents", racing)
    report = await runtime.ingestion.ingest([ours])
    assert raced and report.outcomes[0].status == "replaced" and report.chunks == 1
    async with runtime.engine.connect() as conn:
        text = (await conn.execute(select(Chunk.text))).scalar_one()
        meta = (await conn.execute(select(Document.metadata_.label("meta")))).scalar_one()
    assert (text, meta) == (ours.text, {"v": 2})


async def test_reposting_with_new_metadata_over_http_updates_it(api: Api) -> None:
    c, h = api.client, api.headers("write")
    body = {"title": "Kimchi", "text": "Kimchi is fermented cabbage.", "external_id": "kimchi",
            "metadata": {"source": "wiki"}}
    created = await c.post("/api/v1/documents?wait=true", headers=h, json=body)
    assert created.status_code == 201, created.text
    again = await c.post("/api/v1/documents?wait=true", headers=h, json={**body, "metadata": {"source": "book"}})
    assert again.status_code == 200 and again.json() == {**created.json(), "status": "updated"}
    doc = (await c.get(f"/api/v1/documents/{created.json()['document_id']}", headers=h)).json()
    assert doc["metadata"] == {"source": "book"}
    same = await c.post("/api/v1/documents?wait=true", headers=h, json={**body, "metadata": {"source": "book"}})
    assert same.json()["status"] == "unchanged"


def _nested(depth: int) -> str:
    return "[" * depth + "]" * depth


@pytest.mark.parametrize(
    ("request_kwargs", "status", "fragment"),
    [
        # json.loads raised RecursionError: a 500 before
        ({"content": ('{"text": "x", "metadata": {"a": ' + _nested(100_000) + "}}").encode(),
          "headers": {"Content-Type": "application/json"}}, 400, "nested too deeply"),
        ({"content": ('{"documents": [{"text": "x", "metadata": {"a": ' + _nested(100_000) + "}}]}").encode(),
          "headers": {"Content-Type": "application/json"}, "path": "/api/v1/documents/batch"},
         400, "nested too deeply"),
        ({"content": ('{"text": ' + _nested(100_000) + "}").encode(),
          "headers": {"Content-Type": "application/json"}}, 400, "nested too deeply"),
        # parsed, but deeper than metadata may be (and deeper than later encoders would survive)
        ({"content": ('{"text": "x", "metadata": {"a": ' + _nested(900) + "}}").encode(),
          "headers": {"Content-Type": "application/json"}}, 422, "nested deeper than 16"),
        ({"content": ('{"text": ' + _nested(900) + "}").encode(),
          "headers": {"Content-Type": "application/json"}}, 422, "text"),
        (_upload("a.txt", b"Some text.", metadata='{"a": ' + _nested(100_000) + "}"), 422, "metadata"),
        (_upload("a.txt", b"Some text.", metadata='{"a": ' + _nested(900) + "}"), 422, "nested deeper than 16"),
    ],
)
async def test_deeply_nested_json_is_a_client_error(api: Api, request_kwargs, status, fragment) -> None:
    kwargs = dict(request_kwargs)
    path = kwargs.pop("path", "/api/v1/documents?wait=true")
    headers = {**api.headers("write"), **kwargs.pop("headers", {})}
    r = await api.client.post(path, headers=headers, **kwargs)
    assert r.status_code == status, r.text[:500]
    assert fragment in r.json()["detail"]
    assert await _documents(api.runtime) == 0
