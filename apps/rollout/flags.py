"""Feature flags per request: defaults < environment < audited runtime overrides in the database.

Evaluation for a context (user id, job id, request id), in order:
1. kill switch → off, whatever else says;
2. the user is on the allowlist → on;
3. the flag is not enabled → off;
4. a sticky bucket 1..10,000 from MurmurHash3 of "{flag}:{user}" (Unleash's normalisation, see
   apps.core.hashing) ≤ rollout × 10,000 → on. Raising the rollout only adds buckets, so nobody who
   had the feature loses it; the same user gets the same answer in every process and host.

Every worker polls the audit table's newest id each `refresh_s`; a change (an override written or a
reload requested anywhere) makes it re-read the environment and the overrides.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

from sqlalchemy import Select, func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine
from tenacity import retry, retry_if_exception_type, stop_after_attempt

from apps.core import metrics
from apps.core.config import environment_with_files
from apps.core.db import write_transaction
from apps.core.flags import (
    FLAG_DEFINITIONS,
    FLAGS,
    RESERVED_FLAGS,
    FlagConfigError,
    env_flag_config,
    parse_rollout,
)
from apps.core.hashing import BUCKETS, normalized_value
from apps.core.models import FlagAudit, FlagOverride, utcnow
from apps.core.periodic import Periodic

log = logging.getLogger(__name__)

PIPELINE_FLAG = "new_pipeline"
# Features of the new pipeline: a request routed to the legacy pipeline gets none of them.
# The features a request's pipeline variant turns on or off (platform switches are not among them).
GATED_FLAGS = tuple(f.name for f in FLAG_DEFINITIONS if f.name != PIPELINE_FLAG and f.per_request)


class UnknownFlagError(KeyError):
    pass


@dataclass(frozen=True)
class FlagContext:
    user_id: str | None = None
    job_id: str | None = None
    request_id: str | None = None

    @property
    def stickiness(self) -> str | None:
        return self.user_id or self.job_id or self.request_id


@dataclass(frozen=True)
class FlagConfig:
    name: str
    enabled: bool = False
    rollout: float = 1.0
    user_ids: frozenset[str] = frozenset()
    kill: bool = False
    source: str = "default"  # default | environment | override
    updated_at: datetime | None = None
    updated_by: str | None = None

    def snapshot(self) -> dict[str, Any]:
        """Everything that decides the flag, allowlist members included: what the audit records."""
        return {"enabled": self.enabled, "rollout_fraction": self.rollout, "user_ids": sorted(self.user_ids),
                "kill": self.kill}

    def view(self) -> dict[str, Any]:
        """The flag as operators see it (API, /health, /debug, CLI): the allowlist's size, not its members."""
        return {"enabled": self.enabled, "kill": self.kill, "source": self.source, "rollout_fraction": self.rollout,
                "allowlist_size": len(self.user_ids)}


@dataclass(frozen=True)
class Evaluation:
    enabled: bool
    reason: str  # kill | allowlist | disabled | rollout | full
    bucket: int | None


@dataclass(frozen=True)
class Assignment:
    variant: str  # "new" | "legacy"
    flags: dict[str, bool]
    bucket: int | None


@dataclass
class _State:
    configs: dict[str, FlagConfig] = field(default_factory=dict)
    audit_mark: int = -1
    checked_at: float = -1e18


def bucket_of(flag: str, key: str) -> int:
    return normalized_value(key, flag)


def evaluate(config: FlagConfig, context: FlagContext) -> Evaluation:
    key = context.stickiness
    if config.kill:
        return Evaluation(False, "kill", None)
    if context.user_id is not None and context.user_id in config.user_ids:
        return Evaluation(True, "allowlist", None)
    if not config.enabled:
        return Evaluation(False, "disabled", None)
    if config.rollout >= 1.0:
        return Evaluation(True, "full", None)
    if key is None:  # nothing to be sticky on: only a full rollout reaches anonymous traffic
        return Evaluation(False, "rollout", None)
    bucket = bucket_of(config.name, key)
    return Evaluation(bucket <= round(config.rollout * BUCKETS), "rollout", bucket)


def configs_from_environment(environ: Mapping[str, str]) -> dict[str, FlagConfig]:
    configs = {}
    for definition in FLAG_DEFINITIONS:
        env = env_flag_config(definition.name, environ)
        touched = env.enabled is not None or env.rollout is not None or env.user_ids is not None
        # A rollout percentage alone means "enabled for that share"; an explicit false still wins.
        enabled = env.enabled if env.enabled is not None else (env.rollout is not None or definition.default)
        configs[definition.name] = FlagConfig(
            name=definition.name, enabled=enabled, rollout=env.rollout if env.rollout is not None else 1.0,
            user_ids=env.user_ids or frozenset(), source="environment" if touched else "default",
        )
    return configs


def _apply_override(config: FlagConfig, row: Any) -> FlagConfig:
    return replace(
        config,
        enabled=row.enabled if row.enabled is not None else config.enabled,
        rollout=row.rollout_fraction if row.rollout_fraction is not None else config.rollout,
        user_ids=frozenset(row.user_ids) if row.user_ids is not None else config.user_ids,
        kill=bool(row.kill), source="override", updated_at=row.updated_at, updated_by=row.updated_by,
    )


class FlagService:
    def __init__(self, engine: AsyncEngine, refresh_s: float = 1.0, environ: Mapping[str, str] | None = None) -> None:
        self._engine = engine
        self._refresh_s = refresh_s
        self._environ = environ
        self._env_configs = configs_from_environment(self._read_environment())  # raises FlagConfigError
        self._state = _State(configs=dict(self._env_configs))
        self._refresher = Periodic("flag-refresh", refresh_s, self._refresh_quietly)

    def _read_environment(self) -> Mapping[str, str]:
        return self._environ if self._environ is not None else environment_with_files()

    # --- reading -----------------------------------------------------------------------------------

    def config(self, name: str) -> FlagConfig:
        try:
            return self._state.configs[name]
        except KeyError:
            raise UnknownFlagError(f"unknown flag {name!r}; known: {', '.join(FLAGS)}") from None

    def configs(self) -> dict[str, FlagConfig]:
        return dict(self._state.configs)

    def is_enabled(self, name: str, context: FlagContext) -> bool:
        result = evaluate(self.config(name), context)
        metrics.FLAG_EVALUATIONS.labels(flag=name, result=str(result.enabled).lower()).inc()
        return result.enabled

    def evaluate(self, name: str, context: FlagContext) -> Evaluation:
        return evaluate(self.config(name), context)

    def assign(self, context: FlagContext) -> Assignment:
        """Which pipeline serves this context, and which features it gets.

        While `new_pipeline` is unconfigured (default everywhere) the features follow their own flags
        and a request that uses any of them counts as "new". Once `new_pipeline` is configured, only
        contexts it selects get the new pipeline; the rest get the legacy one with no new features.
        """
        pipeline_config = self.config(PIPELINE_FLAG)
        pipeline = evaluate(pipeline_config, context)
        flags = {name: self.is_enabled(name, context) for name in GATED_FLAGS}
        if pipeline_config.source == "default":
            new = any(on for name, on in flags.items() if name not in RESERVED_FLAGS)
        else:
            new = pipeline.enabled
            metrics.FLAG_EVALUATIONS.labels(flag=PIPELINE_FLAG, result=str(new).lower()).inc()
            if not new:
                flags = dict.fromkeys(GATED_FLAGS, False)
        flags[PIPELINE_FLAG] = new
        key = context.stickiness
        return Assignment("new" if new else "legacy", flags, bucket_of(PIPELINE_FLAG, key) if key else None)

    # --- refreshing --------------------------------------------------------------------------------

    async def refresh(self, force: bool = False) -> None:
        now = time.monotonic()
        if not force and now - self._state.checked_at < self._refresh_s:
            return
        async with self._engine.connect() as conn:
            mark = int((await conn.execute(select(func.coalesce(func.max(FlagAudit.id), 0)))).scalar_one())
            if force or mark != self._state.audit_mark:
                self._env_configs = configs_from_environment(self._read_environment())
                self._state = _State(await self._merge(conn), mark, now)
            else:
                self._state.checked_at = now

    async def _merge(self, conn: AsyncConnection) -> dict[str, FlagConfig]:
        configs = dict(self._env_configs)
        for row in (await conn.execute(select(FlagOverride))).all():
            if row.name in configs:
                configs[row.name] = _apply_override(configs[row.name], row)
        return configs

    async def _refresh_quietly(self) -> None:
        try:
            await self.refresh()
        except FlagConfigError as exc:  # a bad edit to .env: keep serving the last good flags
            log.error("flag reload refused: %s", exc)

    def start(self) -> None:
        self._refresher.start()

    async def stop(self) -> None:
        self._refresher.stop()

    # --- writing -----------------------------------------------------------------------------------

    async def request_reload(self, actor: str, reason: str = "reload") -> None:
        """Re-read environment and overrides here, and signal every other worker to do the same."""
        configs_from_environment(self._read_environment())  # refuse a broken environment before signalling
        async with write_transaction(self._engine) as conn:
            await conn.execute(FlagAudit.__table__.insert().values(
                name="*", actor=actor, at=utcnow(), old=None, new=None, reason=reason))
        await self.refresh(force=True)

    # Two first writes of one flag race to insert its row; the loser retries and then updates it.
    @retry(retry=retry_if_exception_type(IntegrityError), stop=stop_after_attempt(3), reraise=True)
    async def set(self, name: str, *, actor: str, reason: str, enabled: bool | None = None,
                  rollout: float | None = None, user_ids: list[str] | None = None, kill: bool | None = None,
                  ) -> FlagConfig:
        """Write an override (fields left None keep their current override) and its audit entry, atomically.

        The row is locked while it is read and rewritten, so concurrent writers (a canary rollback and
        an operator's kill switch) apply one after the other: neither undoes the other, and each audit
        entry's "old" is what the previous writer left."""
        if name not in FLAGS:
            raise UnknownFlagError(f"unknown flag {name!r}; known: {', '.join(FLAGS)}")
        if not reason.strip():
            raise FlagConfigError("a reason is required for every flag change")
        if rollout is not None:
            rollout = parse_rollout(rollout, "rollout_fraction")
        async with write_transaction(self._engine) as conn:
            row = (await conn.execute(_locked(name))).first()
            before = self._effective(name, row)
            if enabled is None and rollout and not before.enabled:
                enabled = True  # as in the environment: setting a share means "on for that share"
            values = {
                "enabled": enabled if enabled is not None else (row.enabled if row else None),
                "rollout_fraction": rollout if rollout is not None else (row.rollout_fraction if row else None),
                "user_ids": sorted(set(user_ids)) if user_ids is not None else (row.user_ids if row else None),
                "kill": kill if kill is not None else (bool(row.kill) if row else False),
                "updated_by": actor, "updated_at": utcnow(),
            }
            if row is None:
                await conn.execute(FlagOverride.__table__.insert().values(name=name, **values))
            else:
                await conn.execute(FlagOverride.__table__.update().where(FlagOverride.name == name).values(**values))
            after = self._effective(name, _Row(name=name, **values))
            await conn.execute(FlagAudit.__table__.insert().values(
                name=name, actor=actor, at=utcnow(), old=before.snapshot(), new=after.snapshot(), reason=reason))
        await self.refresh(force=True)
        return self.config(name)

    async def clear(self, name: str, *, actor: str, reason: str) -> FlagConfig:
        """Drop the override: the flag goes back to environment and defaults."""
        if name not in FLAGS:
            raise UnknownFlagError(f"unknown flag {name!r}")
        async with write_transaction(self._engine) as conn:
            row = (await conn.execute(_locked(name))).first()
            before = self._effective(name, row)
            await conn.execute(FlagOverride.__table__.delete().where(FlagOverride.name == name))
            await conn.execute(FlagAudit.__table__.insert().values(
                name=name, actor=actor, at=utcnow(), old=before.snapshot(),
                new=self._env_configs[name].snapshot(), reason=reason))
        await self.refresh(force=True)
        return self.config(name)

    def _effective(self, name: str, row: Any | None) -> FlagConfig:
        base = self._env_configs[name]
        return _apply_override(base, row) if row is not None else base

    async def history(self, name: str, limit: int = 50) -> list[dict[str, Any]]:
        async with self._engine.connect() as conn:
            rows = (await conn.execute(
                select(FlagAudit).where(FlagAudit.name.in_([name, "*"])).order_by(FlagAudit.id.desc()).limit(limit)
            )).all()
        return [{"id": r.id, "flag": r.name, "actor": r.actor, "at": r.at.isoformat(), "old": r.old, "new": r.new,
                 "reason": r.reason} for r in rows]

    async def last_changes(self) -> dict[str, dict[str, Any]]:
        async with self._engine.connect() as conn:
            newest = select(FlagAudit.name, func.max(FlagAudit.id).label("id")).group_by(FlagAudit.name).subquery()
            rows = (await conn.execute(select(FlagAudit).join(newest, FlagAudit.id == newest.c.id))).all()
        return {r.name: {"at": r.at.isoformat(), "actor": r.actor, "reason": r.reason} for r in rows}


def _locked(name: str) -> Select:
    """The override row, locked until the transaction ends (PostgreSQL; SQLite's writer lock is the
    whole database, taken by `write_transaction`)."""
    return select(FlagOverride).where(FlagOverride.name == name).with_for_update()


@dataclass(frozen=True)
class _Row:
    name: str
    enabled: bool | None
    rollout_fraction: float | None
    user_ids: list[str] | None
    kill: bool
    updated_by: str
    updated_at: datetime

