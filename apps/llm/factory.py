"""Builds the configured answer provider; the extractive one is always there as the fallback."""

from __future__ import annotations

from importlib.util import find_spec

from apps.core.config import Settings
from apps.llm.base import AnswerProvider
from apps.llm.extractive import ExtractiveProvider
from apps.llm.local import ServerConfig
from apps.text.analyzer import Analyzer


class ProviderUnavailableError(RuntimeError):
    pass


class ProviderFactory:
    """Providers by name on the composition root's settings and analyser."""

    def __init__(self, settings: Settings, analyzer: Analyzer) -> None:
        self.settings = settings
        self.analyzer = analyzer

    def build(self, name: str | None = None) -> AnswerProvider:
        return build_provider(self.settings, self.analyzer, name)


def build_provider(settings: Settings, analyzer: Analyzer, name: str | None = None) -> AnswerProvider:
    name = name or settings.answer_provider
    if name == "extractive":
        return ExtractiveProvider(analyzer)
    if name == "gemini":
        if not settings.gemini_api_key:
            raise ProviderUnavailableError("the gemini provider needs GEMINI_API_KEY")
        from apps.llm.gemini import GeminiProvider

        return GeminiProvider(
            settings.gemini_api_key, settings.gemini_model, base_url=settings.gemini_base_url,
            input_cost_per_mtok=settings.gemini_input_cost_per_mtok,
            output_cost_per_mtok=settings.gemini_output_cost_per_mtok,
        )
    if name == "openai":
        if not (settings.llm_base_urls and settings.llm_model):
            raise ProviderUnavailableError("the openai provider needs LLM_BASE_URL and LLM_MODEL")
        from apps.llm.openai_chat import OpenAIChatProvider

        return OpenAIChatProvider(
            settings.llm_base_urls, settings.llm_model, settings.llm_api_key, timeout_s=settings.llm_timeout_s,
            max_tokens=settings.llm_max_tokens, temperature=settings.llm_temperature, attempts=settings.llm_attempts,
            cooldown_s=settings.llm_replica_cooldown_s, input_cost_per_mtok=settings.llm_input_cost_per_mtok,
            output_cost_per_mtok=settings.llm_output_cost_per_mtok,
        )
    if name == "local":
        if find_spec("xllamacpp") is None:  # checked now; the model itself loads on the first answer
            raise ProviderUnavailableError("the local provider needs the local-llm extra: pip install 'dt-rag[local-llm]'")
        from apps.llm.local import LocalProvider

        return LocalProvider(ExtractiveProvider(analyzer), local_config(settings), max_tokens=settings.local_max_tokens,
                             timeout_s=settings.llm_timeout_s)
    raise ProviderUnavailableError(f"unknown provider {name!r}; choose extractive, gemini, openai or local")


def local_config(settings: Settings, host: str = "127.0.0.1", port: int = 0) -> ServerConfig:
    """The local model server the settings describe (`dtrag models serve-local` passes host and port)."""
    return ServerConfig(model_path=settings.local_model_path, host=host, port=port, threads=settings.local_threads,
                        context=settings.local_context_tokens, parallel=settings.local_parallel)
