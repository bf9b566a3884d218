"""Retention: the tables every request appends to are pruned by age, every `RETENTION_INTERVAL_S`.

- `request_events` older than `REQUEST_EVENTS_RETENTION_DAYS` (the views read at most a day back;
  LLM cost at most 31 days);
- `bandit_decisions` older than `BANDIT_DECISIONS_RETENTION_DAYS`, rewarded or not: a decision
  without feedback gets its implicit reward once `BANDIT_REWARD_WINDOW_S` has passed, and one that
  has none by the retention age never will (feedback for it is then a 404); what was learned from
  them stays in the Q-table;
- `idempotency_keys` older than `IDEMPOTENCY_TTL_S` (they have expired: no longer replayed);
- `canary_evaluations` older than `CANARY_EVALUATIONS_RETENTION_DAYS`, except each flag's newest,
  which carries the controller's running counts and the state `/metrics` shows;
- finished `jobs` (with any `job_payloads` left) and `job_events` older than `JOB_RETENTION_DAYS`;
  a job is finished once `finished_at` is set, so a queued or running job is never pruned;
- `conversations` (with their turns) idle for `CONVERSATION_RETENTION_DAYS`, and `feedback` rows not
  changed for `FEEDBACK_RETENTION_DAYS`;
- `tool_calls` (the MCP tool-call audit, with each call's arguments) older than `TOOL_CALLS_RETENTION_DAYS`.

Rows go in batches of `batch_size` per statement and transaction, with a pause between batches, so
no statement holds SQLite's write lock (or PostgreSQL's row locks) for long and a backlog of millions
drains without stalling the service. Every worker prunes; pruning twice deletes nothing twice.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import timedelta
from typing import Any

from sqlalchemy import ColumnElement, Table, delete, func, select, tuple_
from sqlalchemy.ext.asyncio import AsyncEngine

from apps.core.config import Settings
from apps.core.db import write_transaction
from apps.core.models import (
    BanditDecision,
    CanaryEvaluation,
    Conversation,
    ConversationTurn,
    Feedback,
    IdempotencyKey,
    Job,
    JobEvent,
    JobPayload,
    RequestEvent,
    ToolCall,
    utcnow,
)
from apps.core.periodic import Periodic

log = logging.getLogger(__name__)


class Retention:
    def __init__(self, engine: AsyncEngine, settings: Settings, batch_size: int = 5000, pause_s: float = 0.05) -> None:
        self._engine = engine
        self._settings = settings
        self._batch_size = batch_size
        self._pause_s = pause_s
        self._pruner = Periodic("retention", settings.retention_interval_s, self.prune_once)

    def _plans(self) -> list[tuple[Table, tuple[ColumnElement[Any], ...], ColumnElement[bool]]]:
        """(table, primary key columns, which rows are old) for each pruned table."""
        s, now = self._settings, utcnow()
        canary = CanaryEvaluation
        newest_per_flag = select(func.max(canary.id)).group_by(canary.flag)
        old_job = Job.finished_at < now - timedelta(days=s.job_retention_days)
        idle_conversation = Conversation.updated_at < now - timedelta(days=s.conversation_retention_days)
        return [
            (RequestEvent.__table__, (RequestEvent.id,),
             RequestEvent.ts < now - timedelta(days=s.request_events_retention_days)),
            (BanditDecision.__table__, (BanditDecision.request_id,),
             BanditDecision.created_at < now - timedelta(days=s.bandit_decisions_retention_days)),
            (IdempotencyKey.__table__, (IdempotencyKey.scope, IdempotencyKey.key),
             IdempotencyKey.created_at < now - timedelta(seconds=s.idempotency_ttl_s)),
            (canary.__table__, (canary.id,),
             (canary.at < now - timedelta(days=s.canary_evaluations_retention_days))
             & canary.id.not_in(newest_per_flag)),
            # Payloads before their jobs (they reference them).
            (JobPayload.__table__, (JobPayload.job_id, JobPayload.ordinal),
             JobPayload.job_id.in_(select(Job.id).where(old_job))),
            (Job.__table__, (Job.id,), old_job),
            (JobEvent.__table__, (JobEvent.id,), JobEvent.at < now - timedelta(days=s.job_retention_days)),
            # Turns before their conversations (they reference them).
            (ConversationTurn.__table__, (ConversationTurn.id,),
             ConversationTurn.conversation_id.in_(select(Conversation.id).where(idle_conversation))),
            (Conversation.__table__, (Conversation.id,), idle_conversation),
            (Feedback.__table__, (Feedback.request_id, Feedback.key_id),
             Feedback.updated_at < now - timedelta(days=s.feedback_retention_days)),
            (ToolCall.__table__, (ToolCall.id,), ToolCall.at < now - timedelta(days=s.tool_calls_retention_days)),
        ]

    async def prune_once(self) -> dict[str, int]:
        """Delete every row past its retention; returns the rows deleted per table."""
        deleted = {table.name: await self._prune(table, key, old) for table, key, old in self._plans()}
        if any(deleted.values()):
            log.info("retention pruned old rows", extra={"deleted": deleted})
        return deleted

    async def _prune(self, table: Table, key: tuple[ColumnElement[Any], ...], old: ColumnElement[bool]) -> int:
        batch = select(*key).where(old).limit(self._batch_size)
        # By primary key, a batch at a time: PostgreSQL has no `DELETE ... LIMIT` (nor has a default SQLite).
        in_batch = (tuple_(*key) if len(key) > 1 else key[0]).in_(batch)
        total = 0
        while True:
            async with write_transaction(self._engine) as conn:
                count = (await conn.execute(delete(table).where(in_batch))).rowcount
            total += count
            if count < self._batch_size:
                return total
            await asyncio.sleep(self._pause_s)  # let waiting writers in between batches

    def start(self) -> None:
        self._pruner.start()

    async def stop(self) -> None:
        self._pruner.stop()
