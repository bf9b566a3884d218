"""`dtrag worker`: an RQ worker for DT-RAG's queue, and the function it runs.

It is RQ's `SimpleWorker`: jobs run in the worker process itself, on one persistent event loop with
the runtime (engine, embedding model) built once. RQ's forking `Worker` would fork a process holding
the model's threads for every job and load the model again in each. Isolation comes from the
database instead: every attempt claims its row, and a worker killed mid-job leaves a lease that
expires, after which the sweep re-sends the job and another worker takes it as the next attempt.
Each worker also runs that sweep (on a thread with its own engine), so workers recover each other's
jobs without a server.

This module is an entry point, like the API and the CLI: it builds its runtime from `apps.runtime`,
and nothing in the jobs layer imports it (RQ finds `perform` by its dotted name)."""

from __future__ import annotations

import asyncio
import logging
import threading

from apps.core.config import Settings
from apps.jobs.store import QUEUE
from apps.runtime import Runtime, get_runtime

log = logging.getLogger(__name__)

_loop: asyncio.AbstractEventLoop | None = None
_runtime: Runtime | None = None


def _worker_runtime() -> tuple[asyncio.AbstractEventLoop, Runtime]:
    global _loop, _runtime
    if _loop is None or _runtime is None:
        _loop = asyncio.new_event_loop()
        _runtime = get_runtime()
    return _loop, _runtime


def perform(job_id: str) -> str | None:
    """The RQ job: run DT-RAG job `job_id` (a no-op unless its row can be claimed)."""
    loop, runtime = _worker_runtime()
    return loop.run_until_complete(runtime.jobs.executor.execute(job_id, QUEUE))


def _sweep_forever(settings: Settings, stop: threading.Event) -> None:
    async def loop() -> None:
        from apps.core.db import create_engine
        from apps.jobs.queue import JobQueue
        from apps.jobs.store import JobStore

        engine = create_engine(settings, pooled=False)
        store, queue = JobStore(engine, settings.job_lease_s), JobQueue(settings)
        try:
            while not stop.is_set():
                try:
                    for job_id in await store.due_for_resend():
                        await queue.enqueue(job_id)
                        await store.touch(job_id)
                        log.info("job re-sent to the queue", extra={"job_id": job_id})
                except Exception:
                    log.exception("worker sweep failed; retrying")
                await asyncio.sleep(max(settings.job_lease_s / 2, 0.5))
        finally:
            queue.close()
            await engine.dispose()

    asyncio.run(loop())


def run_worker(burst: bool = False, name: str | None = None) -> None:
    from rq import SimpleWorker

    from apps.core.logging import configure_logging
    from apps.jobs.queue import JobQueue

    settings = get_runtime().settings
    configure_logging(settings.log_level)
    queue = JobQueue(settings)
    stop = threading.Event()
    sweeper = threading.Thread(target=_sweep_forever, args=(settings, stop), name="jobs-sweep", daemon=True)
    if not burst:
        sweeper.start()
    worker = SimpleWorker([queue.rq_queue()], connection=queue.connection(), name=name)
    try:
        worker.work(burst=burst, logging_level=settings.log_level)
    finally:
        stop.set()
        if _runtime is not None and _loop is not None:
            _loop.run_until_complete(_runtime.close())
