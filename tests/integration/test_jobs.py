"""Durable jobs on SQLite and PostgreSQL: the 202 protocol, idempotency under concurrency, the
ownership rules of the job store, fallback when Redis is away, migrate-pending-jobs, the rollback
monitor's triggers under a controlled clock, and the jobs' owners, quota and cleanup."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator
from datetime import timedelta

import pytest
from sqlalchemy import delete, func, select, update

from apps.core.api_keys import Scope
from apps.core.db import write_transaction
from apps.core.models import Chunk, Document, Job, JobEvent, JobPayload, utcnow
from apps.core.retention import Retention
from apps.jobs.monitor import RollbackMonitor
from apps.jobs.queue import JobQueue
from apps.jobs.service import JobStateError
from apps.jobs.store import IN_PROCESS, QUEUE, JobStore, Payload, StaleAttemptError
from apps.rollout.flags import FlagContext
from tests.support.api import Api, api_client
from tests.support.redis_server import RedisServer


@pytest.fixture
async def api(settings):
    async with api_client(settings.model_copy(update={"job_heartbeat_s": 0.2})) as client:
        yield client


async def _final(api: Api, job_id: str, timeout: float = 60) -> dict:
    async with asyncio.timeout(timeout):
        while True:  # an admin key sees every key's jobs
            job = (await api.client.get(f"/api/v1/jobs/{job_id}", headers=api.headers("admin"))).json()
            if job["status"] in ("succeeded", "failed", "cancelled", "dead_letter"):
                return job
            await asyncio.sleep(0.05)


async def _counts(api: Api) -> tuple[int, int]:
    async with api.runtime.engine.connect() as conn:
        docs = (await conn.execute(select(func.count()).select_from(Document))).scalar_one()
        chunks = (await conn.execute(select(func.count()).select_from(Chunk))).scalar_one()
    return docs, chunks


async def test_post_answers_202_and_the_job_ingests(api: Api) -> None:
    h = api.headers("write")
    r = await api.client.post("/api/v1/documents", headers=h, json={"title": "Kimchi", "text": "Kimchi is fermented."})
    assert r.status_code == 202, r.text
    body = r.json()
    assert set(body) == {"job_id", "status"} and body["status"] == "queued"
    assert r.headers["Location"] == f"/api/v1/jobs/{body['job_id']}"
    job = await _final(api, body["job_id"])
    assert job["status"] == "succeeded" and job["mode"] == "in_process" and job["attempts"] == 1
    assert job["mode_reason"] == "durable_worker flag is off"
    assert job["result"]["documents"][0]["status"] == "created" and job["progress"]["done"] == 1
    listed = (await api.client.get("/api/v1/jobs?status=succeeded", headers=h)).json()
    assert [j["job_id"] for j in listed] == [body["job_id"]]
    async with api.runtime.engine.connect() as conn:  # the payload goes once the job has succeeded
        assert (await conn.execute(select(func.count()).select_from(JobPayload))).scalar_one() == 0


async def test_wait_batch_events_and_cancel(api: Api) -> None:
    h = api.headers("write")
    r = await api.client.post("/api/v1/documents?wait=true", headers=h, json={"text": "Tea is a drink."})
    assert r.status_code == 201 and r.json()["status"] == "created"
    again = await api.client.post("/api/v1/documents?wait=true", headers=h, json={"text": "Tea is a drink."})
    assert again.status_code == 200 and again.json()["status"] == "unchanged"
    files = [("files", ("a.md", b"# A\n\nAlpha text here.", "text/markdown")),
             ("files", ("b.txt", b"Beta text here.", "text/plain"))]
    r = await api.client.post("/api/v1/documents/batch", headers=h, files=files)
    assert r.status_code == 202
    job = await _final(api, r.json()["job_id"])
    assert job["status"] == "succeeded" and job["result"]["created"] == 2
    r = await api.client.post("/api/v1/documents/batch", headers=h,
                              json={"documents": [{"text": "One."}, {"text": "Two."}]})
    events = await api.client.get(f"/api/v1/jobs/{r.json()['job_id']}/events", headers=h)
    assert events.headers["content-type"].startswith("text/event-stream")
    assert "event: done" in events.text and '"succeeded"' in events.text
    done = await api.client.post(f"/api/v1/jobs/{r.json()['job_id']}/cancel", headers=h)
    assert done.status_code == 409
    bad = await api.client.post("/api/v1/documents?wait=true", headers=h,
                                files={"file": ("empty.txt", b"   ", "text/plain")})
    assert bad.status_code == 422 and "empty.txt: contains no text" in bad.json()["detail"]


async def test_concurrent_idempotency_key_makes_one_job(api: Api) -> None:
    h = {**api.headers("write"), "Idempotency-Key": "same-key"}
    body = {"text": "Green tea is unoxidised.", "external_id": "tea"}
    responses = await asyncio.gather(*[api.client.post("/api/v1/documents", headers=h, json=body) for _ in range(6)])
    assert {r.status_code for r in responses} == {202}
    assert len({r.json()["job_id"] for r in responses}) == 1
    assert sum(r.headers.get("Idempotent-Replayed") == "true" for r in responses) == 5
    async with api.runtime.engine.connect() as conn:
        assert (await conn.execute(select(func.count()).select_from(Job))).scalar_one() == 1
    conflict = await api.client.post("/api/v1/documents", headers=h, json={**body, "text": "Black tea."})
    assert conflict.status_code == 422 and "different request body" in conflict.json()["detail"]
    multipart = {**api.headers("write"), "Idempotency-Key": "upload-key"}
    files = {"file": ("n.txt", b"Notes.", "text/plain")}
    first = await api.client.post("/api/v1/documents", headers=multipart, files=files)
    second = await api.client.post("/api/v1/documents", headers=multipart, files=files)
    assert first.json()["job_id"] == second.json()["job_id"]
    await _final(api, first.json()["job_id"])
    assert (await _counts(api))[0] == 2


async def test_an_orphaned_attempt_cannot_commit(runtime) -> None:
    store = JobStore(runtime.engine, lease_s=0.2)
    async with write_transaction(runtime.engine) as conn:
        await store.create(conn, "j1", "learn", IN_PROCESS, "", 3)
    first = await store.claim("j1", "worker-a", IN_PROCESS)
    assert first is not None and first.attempt == 1
    assert await store.claim("j1", "worker-b", IN_PROCESS) is None  # the lease is live
    await asyncio.sleep(0.3)
    second = await store.claim("j1", "worker-b", IN_PROCESS)
    assert second is not None and second.attempt == 2 and second.recovered
    assert not await store.heartbeat(first)
    with pytest.raises(StaleAttemptError):
        await store.succeed(first, {"late": True})
    await store.succeed(second, {"ok": True})
    job = await store.get("j1")
    assert job.status == "succeeded" and job.result == {"ok": True} and job.attempt == 2
    assert await store.crashes_since(utcnow() - timedelta(minutes=1)) == 1


async def test_an_attempt_past_the_limit_is_never_started(runtime) -> None:
    """Attempts that die holding the job (stalled heartbeats, kill -9) count: the last allowed one's
    expired lease fails the job instead of starting attempt max + 1."""
    store = JobStore(runtime.engine, lease_s=0.05)
    async with write_transaction(runtime.engine) as conn:
        await store.create(conn, "j2", "learn", IN_PROCESS, "", 2)
    for attempt in (1, 2):
        claim = await store.claim("j2", f"worker-{attempt}", IN_PROCESS)
        assert claim is not None and claim.attempt == attempt
        await asyncio.sleep(0.1)  # and it dies: no heartbeat
    assert await store.claim("j2", "worker-3", IN_PROCESS) is None
    job = await store.get("j2")
    assert job.status == "failed" and job.attempt == 2 and "abandoned" in job.error


async def test_redis_stopped_falls_back_in_process(settings) -> None:
    redis = RedisServer()
    port = redis.port
    redis.stop()
    env = settings.model_copy(update={"redis_url": f"redis://127.0.0.1:{port}/0", "job_heartbeat_s": 0.2})
    async with api_client(env) as api:
        await api.runtime.flags.set("durable_worker", actor="test", reason="drill", enabled=True)
        r = await api.client.post("/api/v1/documents", headers=api.headers("write"), json={"text": "Fallback works."})
        assert r.status_code == 202
        job = await _final(api, r.json()["job_id"])
        assert job["status"] == "succeeded" and job["mode"] == "in_process"
        assert job["mode_reason"].startswith("fallback: redis unreachable")
        async with api.runtime.engine.connect() as conn:
            events = (await conn.execute(select(JobEvent.event))).scalars().all()
        assert "fallback" in events
        health = (await api.client.get("/health?detailed=true")).json()
        assert health["worker_system"]["type"] == "background_tasks" and health["worker_system"]["enabled"]
        assert health["job_queue"]["redis"] == "error"


async def test_migrate_pending_jobs_moves_each_once(api: Api) -> None:
    store = api.runtime.jobs.store
    async with write_transaction(api.runtime.engine) as conn:
        for job_id in ("m1", "m2", "m3"):
            await store.create(conn, job_id, "ingest", QUEUE, "", 3,
                               payloads=[Payload(None, {"text": f"Pending document {job_id}."}, None)], total=1)
        await conn.execute(delete(JobPayload).where(JobPayload.job_id == "m3"))
    h = api.headers("admin")
    first = (await api.client.post("/api/admin/migrate-pending-jobs", headers=h)).json()
    assert sorted(first["moved"]) == ["m1", "m2"] and first["dead_lettered"] == ["m3"]
    second = (await api.client.post("/api/v1/admin/migrate-pending-jobs", headers=h)).json()
    assert second["moved"] == [] and second["dead_lettered"] == []
    for job_id in ("m1", "m2"):
        job = await _final(api, job_id)
        assert job["status"] == "succeeded" and job["attempts"] == 1 and job["mode"] == "in_process"
    assert (await _final(api, "m3"))["status"] == "dead_letter"
    stats = (await api.client.get("/api/admin/stats", headers=h)).json()
    assert "active" in stats["background_tasks"] and stats["jobs"]["succeeded"] == 2


class Clock:
    def __init__(self) -> None:
        self.now = utcnow().timestamp()

    def __call__(self) -> float:
        return self.now


async def _monitor(runtime, clock: Clock, redis_url: str | None = None) -> RollbackMonitor:
    settings = runtime.settings.model_copy(update={"redis_url": redis_url})
    await runtime.flags.set("durable_worker", actor="test", reason="on", enabled=True)
    return RollbackMonitor(runtime.jobs.store, JobQueue(settings), runtime.flags, settings, clock=clock)


async def _rolled_back(runtime) -> list[dict]:
    return [h for h in await runtime.flags.history("durable_worker") if h["actor"] == "jobs-monitor"]


async def test_rollback_on_redis_down_for_five_minutes(runtime) -> None:
    redis = RedisServer()
    url = redis.url
    redis.stop()
    clock = Clock()
    monitor = await _monitor(runtime, clock, url)
    assert (await monitor.check())["action"] == "none"  # down, but not for long
    clock.now += 200
    assert (await monitor.check())["action"] == "none"
    clock.now += 101
    assert (await monitor.check())["action"] == "rolled_back"
    assert not runtime.flags.is_enabled("durable_worker", FlagContext())
    clock.now += 600
    assert (await monitor.check())["action"] == "already_off"  # no flapping, no second audit entry
    assert len(await _rolled_back(runtime)) == 1


async def test_rollback_on_worker_crashes_and_queue_latency(runtime) -> None:
    clock = Clock()
    monitor = await _monitor(runtime, clock)
    async with write_transaction(runtime.engine) as conn:
        for i in range(3):
            await conn.execute(JobEvent.__table__.insert().values(job_id=f"c{i}", at=utcnow(), event="crash", detail={}))
    assert (await monitor.check())["action"] == "none"  # 3 is not more than 3
    await runtime.jobs.store.event("c3", "crash")
    assert (await monitor.check())["action"] == "rolled_back"
    clock.now += 601  # the crashes leave the window; the flag stays off until an operator acts
    assert (await monitor.check())["reasons"] == []
    assert len(await _rolled_back(runtime)) == 1

    clock2 = Clock()
    monitor = await _monitor(runtime, clock2)  # an operator turns it back on; the crashes are dealt with
    async with write_transaction(runtime.engine) as conn:
        await conn.execute(delete(JobEvent))
        await runtime.jobs.store.create(conn, "q1", "learn", QUEUE, "", 3)
        await conn.execute(update(Job).where(Job.id == "q1").values(created_at=utcnow() - timedelta(seconds=30)))
    assert (await monitor.check())["action"] == "none"
    clock2.now += 600
    result = await monitor.check()
    assert result["action"] == "rolled_back" and "oldest queued job" in result["reasons"][0]
    assert len(await _rolled_back(runtime)) == 2


# --- owners, quota, cleanup -------------------------------------------------------------------------

async def _key_id(api: Api, plaintext: str) -> str:
    key = await api.runtime.keys.verify(plaintext)
    assert key is not None
    return key.id


async def _parked(api: Api, job_id: str, owner: str | None, text: str = "Parked.") -> None:
    """A queued queue-mode job with a stored payload: nothing runs it while the test looks at it."""
    async with write_transaction(api.runtime.engine) as conn:
        await api.runtime.jobs.store.create(conn, job_id, "ingest", QUEUE, "", 3, total=1, owner=owner,
                                            payloads=[Payload(None, {"text": text}, None)])


async def _payload_rows(api: Api, job_id: str) -> int:
    async with api.runtime.engine.connect() as conn:
        return (await conn.execute(select(func.count()).select_from(JobPayload)
                                   .where(JobPayload.job_id == job_id))).scalar_one()


async def test_a_key_sees_and_cancels_only_its_own_jobs(api: Api, caplog) -> None:
    c = api.client
    mine = api.headers("write")
    _, other_key = await api.runtime.keys.create(Scope.write, name="someone else")
    other = {"X-API-Key": other_key}
    r = await c.post("/api/v1/documents", headers=mine, json={"text": "Owned by the write key."})
    job_id = r.json()["job_id"]
    job = await _final(api, job_id)
    assert job["owner"] == await _key_id(api, api.keys["write"]) and job["error_kind"] is None
    for headers in (other, api.headers("read")):  # not the submitter: as if there were no such job
        assert (await c.get(f"/api/v1/jobs/{job_id}", headers=headers)).status_code == 404
        assert (await c.get(f"/api/v1/jobs/{job_id}/events", headers=headers)).status_code == 404
        assert (await c.get("/api/v1/jobs", headers=headers)).json() == []
    assert (await c.get(f"/api/v1/jobs/{job_id}", headers=mine)).status_code == 200
    assert [j["job_id"] for j in (await c.get("/api/v1/jobs", headers=mine)).json()] == [job_id]
    await _parked(api, "parked1", await _key_id(api, api.keys["write"]))
    await _parked(api, "parked2", None)  # a CLI job: no owner, an admin's business
    assert {j["job_id"] for j in (await c.get("/api/v1/jobs", headers=api.headers("admin"))).json()} == {
        job_id, "parked1", "parked2"}
    assert (await c.post("/api/v1/jobs/parked1/cancel", headers=other)).status_code == 404
    assert (await c.post("/api/v1/jobs/parked2/cancel", headers=mine)).status_code == 404
    assert (await api.runtime.jobs.store.get("parked1")).status == "queued"
    with caplog.at_level(logging.INFO, logger="apps.jobs.service"):
        cancelled = await c.post("/api/v1/jobs/parked1/cancel", headers=mine)
        assert cancelled.status_code == 200 and cancelled.json()["status"] == "cancelled"
        by_admin = await c.post("/api/v1/jobs/parked2/cancel", headers=api.headers("admin"))
        assert by_admin.status_code == 200 and by_admin.json()["status"] == "cancelled"
    actors = {r.job_id: r.actor for r in caplog.records if r.getMessage() == "job cancelled"}
    assert actors == {"parked1": await _key_id(api, api.keys["write"]),
                      "parked2": await _key_id(api, api.keys["admin"])}
    async with api.runtime.engine.connect() as conn:
        events = (await conn.execute(select(JobEvent.job_id, JobEvent.detail)
                                     .where(JobEvent.event == "cancelled"))).all()
    assert {e.job_id: e.detail["actor"] for e in events} == actors
    again = await c.post("/api/v1/jobs/parked1/cancel", headers=mine)
    assert again.status_code == 409 and "is cancelled" in again.json()["detail"]


async def test_quota_of_queued_jobs_per_key(settings) -> None:
    """Jobs stay queued on a queue no worker reads; of concurrent submissions over the quota exactly
    the quota's worth are accepted, the rest get a 429 and store nothing."""
    redis = RedisServer()
    env = settings.model_copy(update={"redis_url": redis.url, "job_max_queued_per_key": 3})
    try:
        async with api_client(env) as api:
            await api.runtime.flags.set("durable_worker", actor="test", reason="queue, no workers", enabled=True)
            h = api.headers("write")
            responses = await asyncio.gather(*[
                api.client.post("/api/v1/documents", headers=h, json={"text": f"Queued document {i}."})
                for i in range(6)])
            assert sorted(r.status_code for r in responses) == [202] * 3 + [429] * 3
            refused = next(r for r in responses if r.status_code == 429)
            assert refused.headers["content-type"].startswith("application/problem+json")
            assert "JOB_MAX_QUEUED_PER_KEY=3" in refused.json()["detail"] and refused.json()["request_id"]
            owner = await _key_id(api, api.keys["write"])
            async with api.runtime.engine.connect() as conn:
                owned = (await conn.execute(select(Job.id).where(Job.owner_key_id == owner))).scalars().all()
            assert len(owned) == 3 and {(await api.runtime.jobs.store.get(j)).status for j in owned} == {"queued"}
            # Another key has its own quota; a cancelled job frees a place.
            other = await api.client.post("/api/v1/documents", headers=api.headers("admin"), json={"text": "Mine."})
            assert other.status_code == 202
            assert (await api.client.post(f"/api/v1/jobs/{owned[0]}/cancel", headers=h)).status_code == 200
            assert (await api.client.post("/api/v1/documents", headers=h, json={"text": "Now."})).status_code == 202
            assert (await api.client.post("/api/v1/documents", headers=h, json={"text": "Full."})).status_code == 429
    finally:
        redis.stop()


async def test_cancelled_and_dead_lettered_jobs_drop_their_payloads(api: Api) -> None:
    jobs = api.runtime.jobs
    await _parked(api, "c1", None)
    await _parked(api, "d1", None)
    assert await _payload_rows(api, "c1") == await _payload_rows(api, "d1") == 1
    assert await jobs.cancel("c1", actor="test")
    assert await jobs.store.dead_letter("d1", "drill")
    assert await _payload_rows(api, "c1") == await _payload_rows(api, "d1") == 0
    with pytest.raises(JobStateError, match="input was deleted"):  # nothing left to ingest: refuse, do not "succeed"
        await jobs.retry("c1")
    assert (await jobs.store.get("c1")).status == "cancelled"
    with pytest.raises(JobStateError, match="no job"):
        await jobs.retry("nope")


async def test_a_failed_job_says_what_kind_of_failure(api: Api) -> None:
    r = await api.client.post("/api/v1/documents", headers=api.headers("write"),
                              files={"file": ("empty.txt", b"   ", "text/plain")})
    job = await _final(api, r.json()["job_id"])
    assert job["status"] == "failed" and job["error_kind"] == "invalid_input" and job["attempts"] == 1
    assert job["error"] == "empty.txt: contains no text"  # the user's message, no exception class name


async def test_retention_prunes_finished_jobs_their_payloads_and_events(api: Api) -> None:
    old = utcnow() - timedelta(days=api.runtime.settings.job_retention_days + 1)
    for job_id in ("old-done", "old-queued", "new-done"):
        await _parked(api, job_id, None)
    async with write_transaction(api.runtime.engine) as conn:
        await conn.execute(update(Job).where(Job.id == "old-done").values(status="succeeded", finished_at=old,
                                                                          updated_at=old))
        await conn.execute(update(Job).where(Job.id == "old-queued").values(created_at=old, updated_at=old))
        await conn.execute(update(Job).where(Job.id == "new-done").values(status="failed", finished_at=utcnow()))
        for job_id, at in (("old-done", old), ("new-done", utcnow())):
            await conn.execute(JobEvent.__table__.insert().values(job_id=job_id, at=at, event="moved", detail={}))
    deleted = await Retention(api.runtime.engine, api.runtime.settings).prune_once()
    assert (deleted["jobs"], deleted["job_payloads"], deleted["job_events"]) == (1, 1, 1)
    async with api.runtime.engine.connect() as conn:
        assert set((await conn.execute(select(Job.id))).scalars()) == {"old-queued", "new-done"}
        assert set((await conn.execute(select(JobEvent.job_id))).scalars()) == {"new-done"}
    assert await _payload_rows(api, "old-queued") == 1  # a queued job keeps its input however old
    assert (await Retention(api.runtime.engine, api.runtime.settings).prune_once())["jobs"] == 0


async def test_events_stream_ends_after_its_maximum_duration(settings) -> None:
    async with api_client(settings.model_copy(update={"job_events_max_s": 1.0})) as api:
        await _parked(api, "stuck", await _key_id(api, api.keys["read"]))
        async with asyncio.timeout(15):
            r = await api.client.get("/api/v1/jobs/stuck/events", headers=api.headers("read"))
        blocks = [b.split("\n") for b in r.text.strip().split("\n\n")]
        assert [b[0] for b in blocks] == ["event: progress", "event: timeout"]
        assert json.loads(blocks[-1][1].removeprefix("data: "))["status"] == "queued"


async def _chunked(body: bytes) -> AsyncIterator[bytes]:
    for i in range(0, len(body), 64):
        yield body[i:i + 64]


async def test_wait_goes_by_the_body_received_not_content_length(settings) -> None:
    """A chunked body has no Content-Length; it must not count as empty and hold the request."""
    async with api_client(settings.model_copy(update={"wait_limit_bytes": 200})) as api:
        h = {**api.headers("write"), "Content-Type": "application/json"}
        big = json.dumps({"text": "Big chunked body. " * 30}).encode()
        r = await api.client.post("/api/v1/documents?wait=true", headers=h, content=_chunked(big))
        assert "content-length" not in r.request.headers
        assert r.status_code == 202 and set(r.json()) == {"job_id", "status"}, r.text
        small = json.dumps({"text": "Small chunked body."}).encode()
        r = await api.client.post("/api/v1/documents?wait=true", headers=h, content=_chunked(small))
        assert r.status_code == 201 and r.json()["status"] == "created"


async def test_wait_maps_the_failure_kind_not_its_text(api: Api) -> None:
    """An index on another embedding model is a 409 (reindex first), an unreadable input a 422."""
    h = api.headers("write")
    assert (await api.client.post("/api/v1/documents?wait=true", headers=h, json={"text": "First."})).status_code == 201
    async with write_transaction(api.runtime.engine) as conn:  # as if the corpus came from another model
        await conn.exec_driver_sql("UPDATE embeddings SET model = 'other-model'")
    r = await api.client.post("/api/v1/documents?wait=true", headers=h, json={"text": "Second."})
    assert r.status_code == 409 and "run `dtrag reindex` first" in r.json()["detail"], r.text
    listed = (await api.client.get("/api/v1/jobs?status=failed", headers=h)).json()
    assert [j["error_kind"] for j in listed] == ["conflict"] and listed[0]["attempts"] == 1
