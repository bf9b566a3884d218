"""Builds the configured answer provider; the extractive one is always there as the fallback."""

from __future__ import annotations

from apps.core.config import Settings
from apps.llm.base import AnswerProvider
from apps.llm.extractive import ExtractiveProvider
from apps.search.text.analyzer import get_analyzer


class ProviderUnavailableError(RuntimeError):
    pass


def build_provider(settings: Settings, name: str | None = None) -> AnswerProvider:
    name = name or settings.answer_provider
    if name == "extractive":
        return ExtractiveProvider(get_analyzer())
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

            return LocalProvider(ExtractiveProvider(get_analyzer()), settings.local_model_path,
                                 threads=settings.local_threads, max_tokens=settings.local_max_tokens)
        except ImportError as exc:
            raise ProviderUnavailableError(str(exc)) from None
    raise ProviderUnavailableError(f"unknown provider {name!r}; choose extractive, gemini or local")
