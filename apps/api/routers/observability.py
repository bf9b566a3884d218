"""Prometheus `/metrics`, the runbooks' JSON views of it, and `/debug` outside production.

Only the Prometheus text is open by default (scrapers rarely carry keys, and it holds counters, not
traffic details); the JSON views read the shared request log and need a read key.
`METRICS_REQUIRE_KEY=true` puts the Prometheus text behind a read key too. The windows are capped:
the views are SQL aggregates, but a day of events is what they are for.
"""

from __future__ import annotations

from importlib.util import find_spec
from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Query, Request, Security
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST

from apps.api.deps import AdminKey, ReadKey, RuntimeDep, api_key_header, require
from apps.core import metrics
from apps.core.api_keys import Scope
from apps.core.config import Environment
from apps.core.redaction import redact_setting

router = APIRouter(tags=["observability"])

# The runbooks' thresholds for GET /metrics/health.
ERROR_RATE_WARNING, ERROR_RATE_ELEVATED, ERROR_RATE_CRITICAL = 0.01, 0.05, 0.10
MEAN_MS_WARNING, MEAN_MS_CRITICAL = 1000.0, 5000.0
LLM_MS_WARNING, LLM_MS_CRITICAL = 5000.0, 15000.0
_CANARY_STATES = {"idle": 0, "pass": 1, "hold": 2, "fail": 3, "breach": 4}
DAY_MINUTES = 60 * 24
COST_MINUTES = 31 * DAY_MINUTES
_Minutes = Annotated[float | None, Query(gt=0, le=DAY_MINUTES,
                                         description="window in minutes, at most 1440 (24 h); implies the JSON view")]
_ViewMinutes = Annotated[float, Query(gt=0, le=DAY_MINUTES, description="window in minutes, at most 1440 (24 h)")]
_CostMinutes = Annotated[float, Query(gt=0, le=COST_MINUTES, description="window in minutes, at most 44640 (31 days)")]


async def _database_gauges(runtime: Any) -> dict[str, tuple[str, list[tuple[dict[str, str], float]]]]:
    states = len((await runtime.bandit.learner.refresh()).stats)
    replay = await runtime.bandit.replay.size()
    canary = await runtime.canary.status()
    last = canary["last_evaluation"] or {}
    verdict = last.get("verdict", "idle") if canary["active"] else "idle"
    flag = {"flag": canary["flag"]}
    collections = await runtime.collections.document_counts()  # SPEC-ACCESS-001
    return {
        "collection_documents": ("Documents per collection", [({"collection": name}, documents)
                                                              for name, (documents, _) in collections.items()]),
        "collection_chunks": ("Chunks per collection", [({"collection": name}, chunks)
                                                        for name, (_, chunks) in collections.items()]),
        "replay_buffer_size": ("Experiences in the shared replay buffer", [({}, replay)]),
        "q_table_states": ("States in the shared Q-table", [({}, states)]),
        "canary_state": ("Canary verdict: 0 idle, 1 pass, 2 hold, 3 fail, 4 breach", [(flag, _CANARY_STATES[verdict])]),
        "canary_consecutive_failures": ("Consecutive failing canary evaluations",
                                        [(flag, last.get("consecutive_failures", 0))]),
        "canary_rollout_ratio": ("Current rollout of the canary flag", [(flag, canary["rollout_fraction"])]),
    }


@router.get("/metrics", summary="Prometheus metrics (open unless METRICS_REQUIRE_KEY); JSON by variant with "
                              "Accept: application/json or ?minutes= (read key)")
async def prometheus(request: Request, runtime: RuntimeDep, minutes: _Minutes = None,
                     api_key: Annotated[str | None, Security(api_key_header)] = None) -> Response:
    as_json = minutes is not None or "application/json" in request.headers.get("accept", "")
    if as_json or runtime.settings.metrics_require_key:
        await require(Scope.read)(request, runtime, api_key)
    if as_json:
        return JSONResponse(await _variant_view(runtime, minutes or 60))
    return Response(metrics.render(await _database_gauges(runtime)), media_type=CONTENT_TYPE_LATEST)


async def _variant_view(runtime: Any, minutes: float) -> dict[str, Any]:
    by_variant = await runtime.request_log.by_variant(minutes)
    return {
        "window_minutes": minutes,
        "requests_by_pipeline_type": {v: s["requests"] for v, s in by_variant.items()},
        "error_rate_by_variant": {v: s["error_rate"] for v, s in by_variant.items()},
        "latency_ms_by_variant": {v: {k: s["latency_ms"][k] for k in ("p50", "p95", "p99")}
                                  for v, s in by_variant.items()},
        "mean_latency_ms_by_variant": {v: s["latency_ms"]["mean"] for v, s in by_variant.items()},
        "quality_by_variant": {v: s["quality"] for v, s in by_variant.items()},
        "canary": await runtime.canary.status(),
    }


def _level(value: float, warning: float, critical: float) -> str:
    return "critical" if value >= critical else "warning" if value >= warning else "healthy"


@router.get("/metrics/health", summary="healthy / warning / critical from error rate, latency and LLM latency")
async def metrics_health(runtime: RuntimeDep, _: ReadKey, minutes: _ViewMinutes = 15) -> dict[str, Any]:
    # Requests with a valid key only: traffic without one must not make the service look sick or well.
    window = await runtime.request_log.window(minutes, authenticated_only=True)
    total = window["total"]
    llm = await runtime.request_log.llm_usage(minutes)
    llm_requests = sum(r["requests"] for r in llm)
    llm_ms = sum(r["mean_latency_ms"] * r["requests"] for r in llm) / llm_requests if llm_requests else 0.0
    checks = {
        "error_rate": {"value": total["error_rate"], "status": _level(total["error_rate"], ERROR_RATE_WARNING,
                                                                      ERROR_RATE_CRITICAL),
                       "elevated": total["error_rate"] >= ERROR_RATE_ELEVATED,
                       "thresholds": {"warning": ERROR_RATE_WARNING, "elevated": ERROR_RATE_ELEVATED,
                                      "critical": ERROR_RATE_CRITICAL}},
        "avg_processing_ms": {"value": total["latency_ms"]["mean"],
                              "status": _level(total["latency_ms"]["mean"], MEAN_MS_WARNING, MEAN_MS_CRITICAL),
                              "thresholds": {"warning": MEAN_MS_WARNING, "critical": MEAN_MS_CRITICAL}},
        "llm_latency_ms": {"value": round(llm_ms, 2), "status": _level(llm_ms, LLM_MS_WARNING, LLM_MS_CRITICAL),
                           "thresholds": {"warning": LLM_MS_WARNING, "critical": LLM_MS_CRITICAL}},
    }
    statuses = [c["status"] for c in checks.values()]
    overall = "critical" if "critical" in statuses else "warning" if "warning" in statuses else "healthy"
    return {"status": overall, "window_minutes": minutes, "requests": total["requests"], "checks": checks}


@router.get("/metrics/llm-cost", summary="LLM tokens and cost by provider, model and variant")
async def llm_cost(runtime: RuntimeDep, _: ReadKey, minutes: _CostMinutes = 1440) -> dict[str, Any]:
    rows = await runtime.request_log.llm_usage(minutes)
    return {"window_minutes": minutes, "total_cost_usd": round(sum(r["cost_usd"] for r in rows), 6),
            "total_tokens": sum(r["input_tokens"] + r["output_tokens"] for r in rows), "by_model": rows}


@router.get("/debug", summary="Effective settings (secrets redacted), flags, providers, dependencies; admin key; "
                            "not in production")
async def debug(runtime: RuntimeDep, _: AdminKey) -> dict[str, Any]:
    settings = runtime.settings
    if settings.environment is Environment.production:
        raise HTTPException(404, "GET /debug is disabled in production")
    providers = {
        "default": settings.answer_provider,
        "extractive": "available",
        "gemini": "available" if settings.gemini_api_key else "unavailable: GEMINI_API_KEY is not set",
        "openai": "available" if settings.llm_base_urls and settings.llm_model
                  else "unavailable: LLM_BASE_URL and LLM_MODEL are not set",
        # Checked without loading the model: that takes seconds and memory.
        "local": "available" if find_spec("xllamacpp") else "unavailable: the local-llm extra is not installed",
    }
    flags = runtime.flags
    return {
        "settings": {k: redact_setting(k, v) for k, v in settings.model_dump(mode="json").items()},
        "flags": {name: c.view() for name, c in flags.configs().items()},
        "providers": providers,
        "dependencies": {"database": settings.backend, "redis": "configured" if runtime.redis else "not_configured"},
        "canary": await runtime.canary.status(),
        "bandit": {"arms": list(runtime.bandit.learner.arms),
                   "policy_version": runtime.bandit.learner.version},
    }
