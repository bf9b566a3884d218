"""Builds the configured reranker, or none."""

from __future__ import annotations

from apps.core.config import Settings
from apps.search.rerank.base import Reranker


def build_reranker(settings: Settings) -> Reranker | None:
    if settings.rerank_provider is None:
        return None
    from apps.search.rerank.http import HTTPReranker

    assert settings.rerank_base_url  # the settings' validation asks for it
    return HTTPReranker(settings.rerank_provider, settings.rerank_base_url, settings.rerank_model,
                        settings.rerank_api_key, timeout_s=settings.rerank_timeout_s,
                        cost_per_call_usd=settings.rerank_cost_per_call_usd)
