"""An answer pipeline over a test's runtime, with the extractive provider unless given another, and a
Gemini provider talking to a local fake server (tests/support/fake_gemini.py)."""

from __future__ import annotations

from apps.llm.base import AnswerProvider
from apps.llm.factory import build_provider
from apps.llm.gemini import GeminiProvider
from apps.orchestration.src.answer_graph import AnswerPipeline
from apps.runtime import Runtime
from apps.text.analyzer import get_analyzer
from tests.support.fake_gemini import FakeGemini


def pipeline(runtime: Runtime, provider: AnswerProvider | None = None, **settings) -> AnswerPipeline:
    """`settings` override the runtime's for this pipeline only."""
    s = runtime.settings.model_copy(update=settings)
    analyzer = get_analyzer(s.korean_analyzer)
    return AnswerPipeline(runtime.bandit, provider or build_provider(s, analyzer, "extractive"), analyzer, s,
                          runtime.flags)


def gemini_provider(server: FakeGemini) -> GeminiProvider:
    """Gemini 2.5 Flash's prices, so usage is costed; retries at once (10 ms backoff)."""
    return GeminiProvider("test-key", "gemini-2.5-flash", base_url=server.url, backoff_s=0.01,
                          input_cost_per_mtok=0.30, output_cost_per_mtok=2.50)
