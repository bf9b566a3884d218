"""RQ on Redis: the message is only a job id (the row is the truth), so a lost, duplicated or stale
message is harmless: whoever claims the row runs it, everyone else finds nothing to do. RQ's client is
synchronous; calls run on a thread under a short connect timeout, so an unreachable Redis costs a
request well under a second before its job falls back to in-process execution."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

from apps.core.config import Settings

PERFORM = "apps.jobs.worker.perform"


class QueueUnavailableError(RuntimeError):
    pass


@dataclass(frozen=True)
class QueueStatus:
    reachable: bool
    depth: int | None
    workers: int | None
    error: str | None = None


class JobQueue:
    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._connection: Any | None = None

    @property
    def configured(self) -> bool:
        return bool(self._settings.redis_url)

    def connection(self) -> Any:
        if self._connection is None:
            from redis import Redis

            if not self._settings.redis_url:
                raise QueueUnavailableError("REDIS_URL is not set")
            timeout = self._settings.redis_connect_timeout_s
            self._connection = Redis.from_url(self._settings.redis_url, socket_connect_timeout=timeout,
                                              socket_timeout=max(timeout, 2.0))
        return self._connection

    def rq_queue(self) -> Any:
        from rq import Queue

        return Queue(self._settings.job_queue_name, connection=self.connection())

    def _enqueue(self, job_id: str) -> None:
        # RQ's own timeout is the outer bound; the executor enforces JOB_TIMEOUT_S per attempt inside it.
        timeout = int(self._settings.job_timeout_s * self._settings.job_max_attempts + 60)
        self.rq_queue().enqueue_call(PERFORM, args=(job_id,), timeout=timeout, result_ttl=3600, failure_ttl=86400,
                                     description=f"dtrag job {job_id}")

    async def enqueue(self, job_id: str) -> None:
        """Raises QueueUnavailableError (with the reason) when Redis cannot take it."""
        try:
            await asyncio.to_thread(self._enqueue, job_id)
        except QueueUnavailableError:
            raise
        except Exception as exc:
            raise QueueUnavailableError(f"redis unreachable: {type(exc).__name__}: {exc}") from exc

    def _status(self) -> QueueStatus:
        from rq import Worker

        queue = self.rq_queue()
        return QueueStatus(True, queue.count, Worker.count(connection=self.connection(), queue=queue))

    async def status(self) -> QueueStatus:
        if not self.configured:
            return QueueStatus(False, None, None, "REDIS_URL is not set")
        try:
            return await asyncio.to_thread(self._status)
        except Exception as exc:
            return QueueStatus(False, None, None, f"{type(exc).__name__}: {exc}")

    async def ping(self) -> bool:
        try:
            return bool(await asyncio.to_thread(self.connection().ping))
        except Exception:
            return False

    def close(self) -> None:
        if self._connection is not None:
            self._connection.close()
            self._connection = None
