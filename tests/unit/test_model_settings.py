"""Model-server and reranker settings: what is missing is named at startup, not at the first answer."""

from __future__ import annotations

import pytest

from apps.core.config import SettingsError, load_settings


@pytest.mark.parametrize(("overrides", "message"), [
    ({"answer_provider": "openai"}, "ANSWER_PROVIDER=openai needs LLM_BASE_URL"),
    ({"answer_provider": "openai", "llm_base_url": "http://a/v1"}, "and LLM_MODEL"),
    ({"rerank_provider": "tei"}, "RERANK_PROVIDER needs RERANK_BASE_URL"),
    ({"rerank_provider": "cohere", "rerank_base_url": "http://r/v1"}, "RERANK_PROVIDER=cohere needs RERANK_MODEL"),
    ({"rerank_provider": "vllm", "rerank_base_url": "http://r/v1"}, "RERANK_PROVIDER"),
])
def test_incomplete_model_settings_are_refused(overrides: dict, message: str) -> None:
    with pytest.raises(SettingsError, match=message):
        load_settings(**overrides)


def test_replicas_and_reranked_arms() -> None:
    settings = load_settings(answer_provider="openai", llm_base_url=" http://a/v1, http://b/v1 ,", llm_model="m")
    assert settings.llm_base_urls == ["http://a/v1", "http://b/v1"]
    assert "hybrid_cc+rerank" not in settings.arms
    reranking = load_settings(rerank_provider="tei", rerank_base_url="http://r", rerank_arms="hybrid_cc+rerank,bm25+rerank")
    assert reranking.arms[-2:] == ("hybrid_cc+rerank", "bm25+rerank")
