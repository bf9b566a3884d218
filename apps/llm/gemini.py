"""Gemini through `google-genai` (the maintained SDK), on its async client.

Retries 429 and 5xx with exponential backoff (tenacity); counts tokens from the reply's usage metadata
and prices them with the configured rates. `base_url` points the SDK at another endpoint speaking the
same REST API (the tests run a local one).
"""

from __future__ import annotations

from collections.abc import AsyncIterator

from google import genai
from google.genai import errors, types
from tenacity import AsyncRetrying, retry_if_exception, stop_after_attempt, wait_exponential

from apps.llm.base import ComposeRequest, Evidence, Generation, LLMError, Usage
from apps.llm.prompts import compose_prompt, judge_prompt, parse_verdict
from apps.text.language import detect_language


def _retryable(exc: BaseException) -> bool:
    return isinstance(exc, errors.APIError) and (exc.code == 429 or (exc.code or 0) >= 500)


async def _prepend(first: types.GenerateContentResponse,
                   rest: AsyncIterator[types.GenerateContentResponse]) -> AsyncIterator[types.GenerateContentResponse]:
    yield first
    async for item in rest:
        yield item


class GeminiProvider:
    name = "gemini"
    can_judge = True

    def __init__(self, api_key: str, model: str, base_url: str | None = None, attempts: int = 3,
                 input_cost_per_mtok: float = 0.0, output_cost_per_mtok: float = 0.0,
                 backoff_s: float = 0.5) -> None:
        options = types.HttpOptions(base_url=base_url) if base_url else None
        self._client = genai.Client(api_key=api_key, http_options=options)
        self.model = model
        self._attempts = attempts
        self._backoff = backoff_s
        self._prices = (input_cost_per_mtok, output_cost_per_mtok)

    def _usage(self, metadata: types.GenerateContentResponseUsageMetadata | None) -> Usage:
        prompt = (metadata.prompt_token_count or 0) if metadata else 0
        output = (metadata.candidates_token_count or 0) if metadata else 0
        cost = (prompt * self._prices[0] + output * self._prices[1]) / 1e6
        return Usage(prompt, output, round(cost, 8))

    def _retrying(self) -> AsyncRetrying:
        return AsyncRetrying(retry=retry_if_exception(_retryable), stop=stop_after_attempt(self._attempts),
                             wait=wait_exponential(multiplier=self._backoff, max=8), reraise=True)

    async def _generate_text(self, prompt: str, max_tokens: int) -> tuple[str, Usage]:
        config = types.GenerateContentConfig(temperature=0.2, max_output_tokens=max_tokens)
        try:
            async for attempt in self._retrying():
                with attempt:
                    reply = await self._client.aio.models.generate_content(model=self.model, contents=prompt,
                                                                           config=config)
        except errors.APIError as exc:
            raise LLMError(f"gemini {exc.code}: {exc.message or exc.status}") from None
        except ValueError as exc:  # the SDK's parse error for a malformed reply
            raise LLMError(f"gemini returned a malformed reply: {exc}") from None
        try:
            text = reply.text
        except (ValueError, AttributeError):
            text = None
        if not text:
            raise LLMError("gemini returned no text")
        return text.strip(), self._usage(reply.usage_metadata)

    async def generate(self, request: ComposeRequest) -> Generation:
        text, usage = await self._generate_text(compose_prompt(request), 512)
        return Generation(text=text, provider=self.name, model=self.model, usage=usage)

    async def complete(self, prompt: str, max_tokens: int) -> Generation:
        """A raw prompt (the debate's agents and judge build their own)."""
        text, usage = await self._generate_text(prompt, max_tokens)
        return Generation(text=text, provider=self.name, model=self.model, usage=usage)

    async def stream(self, request: ComposeRequest, usage: Usage) -> AsyncIterator[str]:
        config = types.GenerateContentConfig(temperature=0.2, max_output_tokens=512)
        metadata = None
        try:
            # The request goes out when the first chunk is read, so the retry covers that read; a
            # stream that fails after it has started is not replayed.
            async for attempt in self._retrying():
                with attempt:
                    chunks = await self._client.aio.models.generate_content_stream(
                        model=self.model, contents=compose_prompt(request), config=config)
                    iterator = chunks.__aiter__()
                    first = await anext(iterator, None)
            if first is not None:
                async for chunk in _prepend(first, iterator):
                    metadata = chunk.usage_metadata or metadata
                    if chunk.text:
                        yield chunk.text
        except errors.APIError as exc:
            raise LLMError(f"gemini {exc.code}: {exc.message or exc.status}") from None
        except ValueError as exc:
            raise LLMError(f"gemini returned a malformed reply: {exc}") from None
        usage.assign(self._usage(metadata))

    async def judge(self, question: str, answer: str, evidence: tuple[Evidence, ...], usage: Usage) -> bool | None:
        text, spent = await self._generate_text(judge_prompt(question, answer, evidence, detect_language(question)), 5)
        usage.assign(spent)
        verdict = parse_verdict(text)
        if verdict is not None:
            return verdict
        raise LLMError(f"gemini judge replied {text[:40]!r}, not YES or NO")
