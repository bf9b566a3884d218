"""Builds the configured answer provider; the extractive one is always there as the fallback."""

from __future__ import annotations

from apps.core.config import Settings
from apps.llm.base import AnswerProvider
from apps.llm.extractive import ExtractiveProvider
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
    if name == "local":
        try:
            from apps.llm.local import LocalProvider

            return LocalProvider(ExtractiveProvider(analyzer), settings.local_model_path,
                                 threads=settings.local_threads, max_tokens=settings.local_max_tokens)
        except ImportError as exc:
            raise ProviderUnavailableError(str(exc)) from None
    raise ProviderUnavailableError(f"unknown provider {name!r}; choose extractive, gemini or local")
