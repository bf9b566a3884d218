"""One Alembic history, both backends: upgrade, current, downgrade, one head."""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import subprocess
import sys
from pathlib import Path

from alembic.script import ScriptDirectory
from sqlalchemy import inspect, text

from apps.core.config import load_settings
from apps.core.db import create_engine
from apps.core.migrations import alembic_config
from apps.ingestion.chunking import embed_input
from apps.runtime import build_runtime
from tests.support.api import api_client

ROOT = Path(__file__).resolve().parents[2]


def alembic(url: str, *args: str) -> str:
    env = {**os.environ, "DATABASE_URL": url}
    out = subprocess.run([sys.executable, "-m", "alembic", *args], cwd=ROOT, env=env, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    return out.stdout + out.stderr


async def tables(url: str) -> set[str]:
    engine = create_engine(load_settings(database_url=url))
    async with engine.connect() as conn:
        names = await conn.run_sync(lambda c: set(inspect(c).get_table_names()))
    await engine.dispose()
    return names


def test_single_head() -> None:
    assert len(ScriptDirectory.from_config(alembic_config("sqlite+aiosqlite://")).get_heads()) == 1


async def test_upgrade_current_downgrade_on_both_backends(tmp_path, postgres) -> None:
    urls = [f"sqlite+aiosqlite:///{tmp_path / 'm.db'}", postgres.url(postgres.create_database())]
    for url in urls:
        alembic(url, "upgrade", "head")
        assert "(head)" in alembic(url, "current")
        assert {"documents", "chunks", "embeddings"} <= await tables(url)
        alembic(url, "downgrade", "-1")
        assert "(head)" not in alembic(url, "current")
        alembic(url, "downgrade", "base")
        assert await tables(url) <= {"alembic_version"}
        alembic(url, "upgrade", "head")
        assert "(head)" in alembic(url, "current")


async def _park_upload(url: str, cancel: bool = False) -> None:
    from apps.core.db import write_transaction
    from apps.jobs.store import JobStore, Payload

    engine = create_engine(load_settings(database_url=url))
    store = JobStore(engine, lease_s=30)
    try:
        if cancel:
            assert await store.cancel("upload", actor="test")
            return
        async with write_transaction(engine) as conn:
            await store.create(conn, "upload", "ingest", "queue", "", 3, total=1, owner="key-1",
                               payloads=[Payload("a.txt", {}, b"accepted, not yet ingested")])
    finally:
        await engine.dispose()


async def _columns(url: str, table: str) -> set[str]:
    engine = create_engine(load_settings(database_url=url))
    async with engine.connect() as conn:
        names = await conn.run_sync(lambda c: {col["name"] for col in inspect(c).get_columns(table)})
    await engine.dispose()
    return names


async def test_jobs_downgrade_refuses_while_uploads_are_unprocessed(tmp_path, postgres) -> None:
    urls = [f"sqlite+aiosqlite:///{tmp_path / 'j.db'}", postgres.url(postgres.create_database())]
    for url in urls:
        alembic(url, "upgrade", "head")
        assert {"owner_key_id", "error_kind"} <= await _columns(url, "jobs")
        await _park_upload(url)
        env = {**os.environ, "DATABASE_URL": url}
        refused = subprocess.run([sys.executable, "-m", "alembic", "downgrade", "0008_debate_decisions"], cwd=ROOT,
                                 env=env, capture_output=True, text=True)
        assert refused.returncode != 0
        assert "1 accepted job(s) still hold uploads they have not processed" in refused.stderr
        assert {"jobs", "job_payloads"} <= await tables(url)  # nothing lost
        await _park_upload(url, cancel=True)  # a cancelled job's upload is deleted with it
        alembic(url, "downgrade", "0008_debate_decisions")
        assert not {"jobs", "job_payloads", "job_events"} & await tables(url)


PREVIOUS = "0014_conversations"


async def _previous_release_corpus(url: str) -> str:
    """What the release before collections wrote: a document with its chunk, postings (PostgreSQL) and vector,
    and an API key; returns the key's plaintext."""
    settings = load_settings(database_url=url)
    tools = build_runtime(settings)  # its analyser and embedder only: nothing here touches the database
    title, body = "Vitamin D", "Vitamin D deficiency is associated with bone loss."
    tokens = tools.search.analyzer.tokens(embed_input(title, body))
    vector = (await tools.search.embedder.embed_passages([embed_input(title, body)]))[0]
    model = tools.search.embedder.name
    await tools.close()
    plaintext = "dtr_0badc0de_" + "s" * 43
    digest = hmac.new(settings.secret_key.encode(), plaintext.encode(), hashlib.sha256).hexdigest()
    pg = not settings.is_sqlite
    engine = create_engine(settings)
    async with engine.begin() as conn:
        await conn.execute(text(
            "INSERT INTO documents (id, external_id, title, content_type, checksum, language, taxonomy_path, "
            "metadata, chunk_count, token_count, created_at, updated_at) VALUES ('d0', 'bio', :title, 'text/plain', "
            "'c0', 'en', 'science', :meta, 1, 9, CURRENT_TIMESTAMP, CURRENT_TIMESTAMP)"),
            {"title": title, "meta": json.dumps({})})
        chunk_id = (await conn.execute(text(
            "INSERT INTO chunks (document_id, ordinal, text, token_count, lexical, lexical_length, language) "
            "VALUES ('d0', 0, :body, 9, :lexical, :n, 'en') RETURNING id"),
            {"body": body, "lexical": " ".join(tokens), "n": len(tokens)})).scalar_one()
        literal = "[" + ",".join(f"{float(x):.7g}" for x in vector) + "]"
        await conn.execute(text(
            "INSERT INTO embeddings (chunk_id, model, dim, vector) VALUES (:id, :model, :dim, "
            + ("CAST(:v AS vector))" if pg else ":v)")),
            {"id": chunk_id, "model": model, "dim": len(vector), "v": literal if pg else vector.astype("float32").tobytes()})
        if pg:
            for term in sorted(set(tokens)):
                await conn.execute(text("INSERT INTO chunk_terms (term, chunk_id, tf, dl) VALUES (:t, :c, :tf, :dl)"),
                                   {"t": term, "c": chunk_id, "tf": tokens.count(term), "dl": len(tokens)})
        await conn.execute(text(
            "INSERT INTO api_keys (id, name, prefix, key_hash, scope, created_at) "
            "VALUES ('k0', 'old reader', '0badc0de', :h, 'read', CURRENT_TIMESTAMP)"), {"h": digest})
    await engine.dispose()
    return plaintext


async def test_collections_migration_keeps_the_previous_release_working(tmp_path, postgres) -> None:
    """Documents from before land in `default`, the keys from before see all they saw; downgrading is
    refused while a second collection exists, and keeps the documents once it is gone."""
    urls = [f"sqlite+aiosqlite:///{tmp_path / 'c.db'}", postgres.url(postgres.create_database())]
    for url in urls:
        alembic(url, "upgrade", PREVIOUS)
        old_key = await _previous_release_corpus(url)
        alembic(url, "upgrade", "head")
        settings = load_settings(database_url=url, leg_timeout_ms=5000)
        async with api_client(settings) as api:
            key = await api.runtime.keys.verify(old_key)
            assert key is not None and key.collections == ("*",) and key.groups == ()
            headers = {"X-API-Key": old_key}
            listed = (await api.client.get("/api/v1/documents", headers=headers)).json()["items"]
            assert [(d["external_id"], d["collection"]) for d in listed] == [("bio", "default")]
            for strategy in ("bm25", "dense"):
                hits = (await api.client.post("/api/v1/search", headers=headers,
                                              json={"q": "vitamin D bone loss", "strategy": strategy})).json()["hits"]
                assert [(h["doc_id"], h["collection"]) for h in hits] == [("d0", "default")], strategy
            collections = (await api.client.get("/api/v1/collections", headers=headers)).json()
            assert [(c["name"], c["documents"]) for c in collections] == [("default", 1)]
            await api.runtime.collections.create("other")
        env = {**os.environ, "DATABASE_URL": url}
        refused = subprocess.run([sys.executable, "-m", "alembic", "downgrade", PREVIOUS], cwd=ROOT, env=env,
                                 capture_output=True, text=True)
        assert refused.returncode != 0 and "2 collections exist" in refused.stderr
        assert "collections" in await tables(url)
        engine = create_engine(load_settings(database_url=url))
        async with engine.begin() as conn:
            await conn.execute(text("DELETE FROM collections WHERE name = 'other'"))
        await engine.dispose()
        alembic(url, "downgrade", PREVIOUS)
        assert "collections" not in await tables(url) and "external_id" in await _columns(url, "documents")
        engine = create_engine(load_settings(database_url=url))
        async with engine.connect() as conn:
            assert (await conn.execute(text("SELECT count(*) FROM chunks"))).scalar_one() == 1
        await engine.dispose()
