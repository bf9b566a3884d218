"""What the dashboard's JSON endpoints answer, assembled from the services that own each part."""

from __future__ import annotations

from pathlib import Path
from string import Template
from typing import Any

from cachetools import TTLCache

from apps import __version__
from apps.core.visibility import ALL, Visibility
from apps.orchestration.src import case_ope
from apps.orchestration.src.bandit import ope
from apps.rollout.canary import ACTOR, ANALYSED_ROUTES
from apps.runtime import Runtime

STATIC = Path(__file__).parent / "static"
# Only these files are served: a name from the URL never becomes a path on its own.
ASSETS = {"dashboard.js": "text/javascript", "dashboard.css": "text/css"}
POLL_MS = 5000


def page() -> str:
    """The HTML shell; the version busts browser caches of the assets after an upgrade."""
    template = Template((Path(__file__).parent / "templates" / "dashboard.html").read_text())
    return template.substitute(version=__version__, poll_ms=POLL_MS)


def _sla(runtime: Runtime) -> dict[str, float]:
    return {"error_rate": runtime.settings.canary_error_rate_sla, "p95_ms": runtime.settings.canary_p95_sla_ms}


async def timeseries(runtime: Runtime, minutes: float, bucket_s: int) -> dict[str, Any]:
    """Per-variant traffic on the routes the canary judges, so the charts show what it compares."""
    series = await runtime.request_log.timeseries(minutes, bucket_s, endpoints=ANALYSED_ROUTES)
    return {**series, "routes": list(ANALYSED_ROUTES), "sla": _sla(runtime)}


async def canary(runtime: Runtime, limit: int) -> dict[str, Any]:
    controller = runtime.canary
    history = await runtime.flags.history(controller.flag, 1000)
    return {
        "status": await controller.status(),
        "evaluations": await controller.recent(limit),
        "sla": _sla(runtime),
        # The controller's own flag changes (rollbacks, promotions): the marks on the charts' time axis.
        "actions": [h for h in history if h["actor"] == ACTOR],
    }


async def learning(runtime: Runtime, decisions: int) -> dict[str, Any]:
    bandit = runtime.bandit
    learner = bandit.learner
    await learner.refresh()
    states = [
        {"state": state, "visits": learner.visits(state), "greedy": learner.greedy(state),
         "cells": [{"q": round(s.q, 4), "updates": s.updates} if s is not None else None
                   for s in learner.stats(state)]}
        for state in learner.q_table
    ]
    return {
        "arms": list(learner.arms),
        "policy_version": learner.version,
        "states": states,
        "replay": await bandit.replay.stats(),
        "decisions": await bandit.decisions.recent(decisions),
        "ope": await _ope(runtime),
        "feedback": await runtime.feedback.summary(),  # volume, and the share of answers rated (24 h)
        # case-bank size, selector version, hit rate (24 h), off-policy estimate of the newest selector
        "cases": {**await runtime.cases.summary(), "ope": await _case_ope(runtime)},
    }


# The page polls every few seconds; the estimate moves with the log, not with the poll.
_OPE_CACHE: TTLCache[tuple[str, int], dict[str, Any]] = TTLCache(maxsize=16, ttl=30)


async def _ope(runtime: Runtime) -> dict[str, Any]:
    key = (runtime.settings.database_url, runtime.bandit.learner.version)
    if key not in _OPE_CACHE:
        _OPE_CACHE[key] = await ope.evaluate_log(runtime.bandit.decisions, runtime.bandit.learner, "greedy")
    return _OPE_CACHE[key]


_CASE_OPE_CACHE: TTLCache[tuple[str, int], dict[str, Any]] = TTLCache(maxsize=16, ttl=30)


async def _case_ope(runtime: Runtime) -> dict[str, Any]:
    store = runtime.cases.store
    key = (runtime.settings.database_url, await store.latest_version())
    if key not in _CASE_OPE_CACHE:
        parameters = await case_ope.target_parameters(store, version=key[1] or None)
        _CASE_OPE_CACHE[key] = await case_ope.evaluate_selector(store, parameters, runtime.cases.selector.thresholds)
    return _CASE_OPE_CACHE[key]


async def llm(runtime: Runtime, minutes: float) -> dict[str, Any]:
    """The configured answer provider and what its calls cost and took lately."""
    reranker = runtime.search.reranker
    return {"provider": runtime.settings.answer_provider, "window_minutes": minutes,
            "usage": await runtime.request_log.llm_usage(minutes),
            "server": await runtime.pipelines.provider_status(probe=False),
            "reranker": reranker.status() if reranker is not None else None}


async def collections(runtime: Runtime, visibility: Visibility) -> dict[str, Any]:
    """The collections the admin key may use, with their document and chunk counts and the active keys that
    may use each (SPEC-ACCESS-001)."""
    keys = [k for k in await runtime.keys.list() if k.active]
    return {"collections": [
        {"name": c.name, "documents": c.documents, "chunks": c.chunks, "description": c.description,
         "keys": [{"id": k.id, "name": k.name, "scope": k.scope.name, "all": ALL in k.collections}
                  for k in keys if ALL in k.collections or c.name in k.collections]}
        for c in await runtime.collections.list(visibility)]}
