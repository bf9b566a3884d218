"""The words of the jobs layer: a job's status, kind, mode and why it failed, and `JobView`, a job as its
callers (the API, the CLI, the bench) read it. The `jobs` table stores the values as plain strings."""

from __future__ import annotations

from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, Field


class JobStatus(StrEnum):
    queued = "queued"
    running = "running"
    succeeded = "succeeded"
    failed = "failed"
    cancelled = "cancelled"
    dead_letter = "dead_letter"

    @property
    def final(self) -> bool:
        return self in TERMINAL


TERMINAL = frozenset({JobStatus.succeeded, JobStatus.failed, JobStatus.cancelled, JobStatus.dead_letter})
UNFINISHED = (JobStatus.queued, JobStatus.running)


class JobKind(StrEnum):
    ingest = "ingest"
    reindex = "reindex"
    learn = "learn"


class JobMode(StrEnum):
    queue = "queue"  # an RQ worker runs it
    in_process = "in_process"  # the serving process runs it


class ErrorKind(StrEnum):
    """Why a job failed, so a caller decides what to tell its user without reading the error text."""

    invalid_input = "invalid_input"  # the input cannot be ingested (unreadable, empty, unsupported): fix it
    conflict = "conflict"  # the index is in a state that refuses the work (embedded with another model)
    exhausted = "exhausted"  # a transient error outlived every attempt
    abandoned = "abandoned"  # the last attempt stopped heartbeating (its process died or hung)


class JobProgress(BaseModel):
    done: int
    total: int
    chunks: int


def aware(value: datetime | None) -> datetime | None:
    # SQLite hands back naive datetimes for timezone-aware columns; they were written in UTC.
    if value is not None and value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value


class JobView(BaseModel):
    job_id: str
    kind: JobKind
    status: JobStatus
    mode: JobMode
    mode_reason: str = Field(description="why the job runs where it does (a fallback names its cause)")
    owner: str | None = Field(description="the id of the API key that submitted it (none: the CLI)")
    collections: list[str] = Field(default_factory=lambda: ["*"],
                                   description="the collections it writes to (*: the whole corpus)")
    attempts: int
    max_attempts: int
    progress: JobProgress
    result: dict[str, Any] | None
    error: str | None
    error_kind: ErrorKind | None = Field(description="set with `error` when the job failed")
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    updated_at: datetime

    @classmethod
    def of(cls, row: Any) -> JobView:
        """A `jobs` row."""
        return cls(job_id=row.id, kind=row.kind, status=row.status, mode=row.mode, mode_reason=row.mode_reason,
                   owner=row.owner_key_id, collections=(row.params or {}).get("collections") or ["*"],
                   attempts=row.attempt, max_attempts=row.max_attempts,
                   progress=JobProgress(done=row.progress_done, total=row.progress_total,
                                        chunks=row.progress_chunks),
                   result=row.result, error=row.error, error_kind=row.error_kind,
                   created_at=aware(row.created_at), started_at=aware(row.started_at),
                   finished_at=aware(row.finished_at), updated_at=aware(row.updated_at))
