"""Canary analysis with automatic rollback (and optional staged promotion).

Every `interval`, the worker holding the "canary" lease compares the canary variant ("new") with the
baseline ("legacy") over a sliding window of request events that every worker writes:

- fewer than `min_samples` canary requests → insufficient data: hold (never pass, never fail);
- error rate above its SLA, p95 latency above its SLA, or mean quality (answer groundedness) below
  the baseline's by more than `quality_drop` → fail;
- any of them beyond `breach_factor` × its SLA (twice the quality drop for quality) → breach.

A breach, or `max_failures` consecutive failures, rolls back: the flag's rollout goes to 0 through
the same audited override path an operator uses, with the reason recorded, a critical log line and an
optional webhook. Rolling back an already rolled-back flag changes nothing.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import uuid
from dataclasses import dataclass
from typing import Any

import httpx
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from apps.core.config import Settings
from apps.core.db import write_transaction
from apps.core.models import CanaryEvaluation, utcnow
from apps.core.periodic import Periodic
from apps.core.request_log import RequestLog
from apps.rollout import leases
from apps.rollout.flags import FlagService

log = logging.getLogger(__name__)

LEASE = "canary-controller"
CANARY, BASELINE = "new", "legacy"
ACTOR = "canary-controller"
ANALYSED_ROUTES = ("/api/v1/search", "/api/v1/answer", "/answer")


@dataclass(frozen=True)
class Verdict:
    outcome: str  # pass | fail | breach | hold | idle
    reasons: list[str]
    canary: dict[str, Any] | None
    baseline: dict[str, Any] | None


def judge(canary: dict[str, Any] | None, baseline: dict[str, Any] | None, settings: Settings) -> Verdict:
    """The verdict for one window's summaries (see `RequestLog.by_variant`)."""
    if canary is None or canary["requests"] < settings.canary_min_samples:
        n = canary["requests"] if canary else 0
        return Verdict("hold", [f"insufficient data: {n} canary requests < {settings.canary_min_samples}"],
                       canary, baseline)
    fails: list[str] = []
    breaches: list[str] = []
    factor = settings.canary_breach_factor

    def check(name: str, value: float, sla: float, unit: str = "") -> None:
        if value > factor * sla:
            breaches.append(f"{name} {value:g}{unit} > {factor:g}× SLA {sla:g}{unit}")
        elif value > sla:
            fails.append(f"{name} {value:g}{unit} > SLA {sla:g}{unit}")

    check("error rate", canary["error_rate"], settings.canary_error_rate_sla)
    check("p95 latency", canary["latency_ms"]["p95"], settings.canary_p95_sla_ms, " ms")
    if (baseline and canary.get("quality") is not None and baseline.get("quality") is not None
            and canary["quality_samples"] >= settings.canary_min_samples
            and baseline["quality_samples"] >= settings.canary_min_samples):
        drop = baseline["quality"] - canary["quality"]
        if drop > factor * settings.canary_quality_drop:
            breaches.append(f"quality {canary['quality']:g} is {drop:.3f} below baseline {baseline['quality']:g}")
        elif drop > settings.canary_quality_drop:
            fails.append(f"quality {canary['quality']:g} is {drop:.3f} below baseline {baseline['quality']:g}")
    if breaches:
        return Verdict("breach", breaches + fails, canary, baseline)
    if fails:
        return Verdict("fail", fails, canary, baseline)
    return Verdict("pass", [], canary, baseline)


class CanaryController:
    def __init__(self, engine: AsyncEngine, flags: FlagService, request_log: RequestLog, settings: Settings) -> None:
        self._engine = engine
        self._flags = flags
        self._log = request_log
        self._settings = settings
        self.flag = settings.canary_flag
        self.holder = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"
        self._steps = [float(x) for x in settings.canary_promotion_steps.split(",") if x.strip()]
        self._ticker = Periodic("canary-controller", settings.canary_interval_s, self.tick)

    def _active(self) -> bool:
        config = self._flags.config(self.flag)
        return not config.kill and ((config.enabled and config.rollout > 0) or bool(config.user_ids))

    async def last(self) -> dict[str, Any] | None:
        async with self._engine.connect() as conn:
            row = (await conn.execute(select(CanaryEvaluation).where(CanaryEvaluation.flag == self.flag)
                                      .order_by(CanaryEvaluation.id.desc()).limit(1))).first()
        if row is None:
            return None
        return {"at": row.at.isoformat(), "verdict": row.verdict, "action": row.action,
                "consecutive_failures": row.consecutive_failures, "detail": row.detail}

    async def recent(self, limit: int = 20) -> list[dict[str, Any]]:
        """The newest evaluations of the watched flag, newest first, with their reasons and windows."""
        async with self._engine.connect() as conn:
            rows = (await conn.execute(select(CanaryEvaluation).where(CanaryEvaluation.flag == self.flag)
                                       .order_by(CanaryEvaluation.id.desc()).limit(limit))).all()
        return [{"at": r.at.isoformat(), "verdict": r.verdict, "action": r.action,
                 "consecutive_failures": r.consecutive_failures, "detail": r.detail} for r in rows]

    async def status(self) -> dict[str, Any]:
        config = self._flags.config(self.flag)
        return {"flag": self.flag, "active": self._active(), "rollout_fraction": config.rollout,
                "leader": await leases.holder_of(self._engine, LEASE), "last_evaluation": await self.last()}

    async def tick(self) -> dict[str, Any] | None:
        """One evaluation if this process leads; returns what was recorded (None: not the leader or idle)."""
        ttl = max(self._settings.canary_interval_s * 3, 5.0)
        if not await leases.acquire(self._engine, LEASE, self.holder, ttl):
            return None
        await self._flags.refresh(force=True)
        if not self._active():
            return None
        # Only the routes the new pipeline changes; health checks and scrapes would dilute the canary.
        windows = await self._log.by_variant(self._settings.canary_window_s / 60, endpoints=ANALYSED_ROUTES)
        verdict = judge(windows.get(CANARY), windows.get(BASELINE), self._settings)
        previous = await self.last()
        failures = previous["consecutive_failures"] if previous else 0
        passes = (previous or {}).get("detail", {}).get("consecutive_passes", 0)
        if verdict.outcome in ("fail", "breach"):
            failures, passes = failures + 1, 0
        elif verdict.outcome == "pass":
            failures, passes = 0, passes + 1
        action = "none"
        if verdict.outcome == "breach" or failures >= self._settings.canary_max_failures:
            action = await self._rollback(verdict, failures)
        elif verdict.outcome == "pass" and self._steps and passes >= self._settings.canary_promotion_intervals:
            action = await self._promote()
            passes = 0 if action.startswith("promoted") else passes
        detail = {"reasons": verdict.reasons, "canary": verdict.canary, "baseline": verdict.baseline,
                  "consecutive_passes": passes, "window_s": self._settings.canary_window_s,
                  "rollout_fraction": self._flags.config(self.flag).rollout}
        async with write_transaction(self._engine) as conn:
            await conn.execute(CanaryEvaluation.__table__.insert().values(
                flag=self.flag, at=utcnow(), verdict=verdict.outcome, action=action,
                consecutive_failures=failures if action != "rolled_back" else 0, detail=detail))
        return {"verdict": verdict.outcome, "action": action, "consecutive_failures": failures, "detail": detail}

    async def _rollback(self, verdict: Verdict, failures: int) -> str:
        config = self._flags.config(self.flag)
        if config.rollout == 0:
            return "already_rolled_back"
        why = f"automatic rollback ({verdict.outcome}, {failures} consecutive failures): " + "; ".join(verdict.reasons)
        await self._flags.set(self.flag, actor=ACTOR, reason=why, rollout=0.0)
        log.critical("canary rolled back", extra={"flag": self.flag, "reason": why})
        if self._settings.canary_webhook_url:
            try:
                async with httpx.AsyncClient(timeout=5) as client:
                    await client.post(self._settings.canary_webhook_url,
                                      json={"event": "canary_rollback", "flag": self.flag, "reason": why,
                                            "at": utcnow().isoformat()})
            except httpx.HTTPError as exc:
                log.error("canary webhook failed: %s", type(exc).__name__)
        return "rolled_back"

    async def _promote(self) -> str:
        current = self._flags.config(self.flag).rollout
        higher = [s for s in self._steps if s > current]
        if not higher:
            return "none"
        await self._flags.set(self.flag, actor=ACTOR, rollout=higher[0],
                              reason=f"staged promotion after {self._settings.canary_promotion_intervals} healthy intervals")
        return f"promoted_to_{higher[0]:g}"

    def start(self) -> None:
        if self._settings.canary_enabled:
            self._ticker.start()

    async def stop(self) -> None:
        self._ticker.stop()
        with contextlib.suppress(Exception):  # shutting down: the lease expires anyway
            await leases.release(self._engine, LEASE, self.holder)

