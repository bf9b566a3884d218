"""Gemini embeddings (`gemini-embedding-001`) through `google-genai`'s async client.

The Gemini API takes at most 100 texts per `batchEmbedContents` request, so passages go out in batches
of at most 100, up to `max_in_flight` at once. Gemini normalises only full-size (3072-d) vectors, so
vectors are L2-normalised here to keep a dot product the cosine. A vector truncated to another size
lives in another space, so the identity carries the size (`gemini-embedding-001@768`). 429, 5xx and
transport failures are retried with exponential backoff (tenacity); any other 4xx is the request's
fault and fails at once.
"""

from __future__ import annotations

import asyncio

import httpx
import numpy as np
from google import genai
from google.genai import errors, types
from tenacity import AsyncRetrying, retry_if_exception, stop_after_attempt, wait_exponential

from apps.search.embeddings.base import EmbeddingError
from apps.search.embeddings.token_count import estimated_tokens

_MAX_BATCH = 100  # the API refuses more texts in one batchEmbedContents request

# Timeouts, refused or dropped connections. Recent SDKs send through httpx2 (a fork whose errors share no
# base with httpx's), older ones and GOOGLE_GENAI_HTTP_CLIENT=httpx through httpx.
_TRANSPORT_ERRORS: tuple[type[Exception], ...]
try:
    import httpx2

    _TRANSPORT_ERRORS = (httpx.TransportError, httpx2.TransportError)
except ImportError:
    _TRANSPORT_ERRORS = (httpx.TransportError,)


def _retryable(exc: BaseException) -> bool:
    if isinstance(exc, errors.APIError):
        return exc.code == 429 or (exc.code or 0) >= 500
    return isinstance(exc, _TRANSPORT_ERRORS)


class GeminiEmbeddingProvider:
    def __init__(self, api_key: str, model: str = "gemini-embedding-001", base_url: str | None = None,
                 dimensions: int = 768, batch_size: int = _MAX_BATCH, max_in_flight: int = 4, attempts: int = 4,
                 backoff_s: float = 0.5, timeout_s: float = 60.0) -> None:
        self.model = model
        self.name = f"{model}@{dimensions}"
        self.dim = dimensions
        self._api_key = api_key
        # The SDK's default is no timeout at all: a stalled request would hang an ingest forever.
        self._http_options = types.HttpOptions(base_url=base_url, timeout=int(timeout_s * 1000))
        self._batch_size = min(batch_size, _MAX_BATCH)
        self._max_in_flight = max_in_flight
        self._attempts = attempts
        self._backoff = backoff_s
        self._client: genai.Client | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._in_flight: asyncio.Semaphore | None = None

    async def ready(self) -> None:
        pass  # the dimension is asked for, not learnt

    def count_tokens(self, text: str) -> int:
        return estimated_tokens(text)

    def _bind(self) -> tuple[genai.Client, asyncio.Semaphore]:
        """A semaphore belongs to the loop that first waits on it, so a process that runs loops one after
        another (the CLI, the tests) gets one per loop; the client is made again after `aclose()`."""
        loop = asyncio.get_running_loop()
        if self._in_flight is None or self._loop is not loop:
            self._loop, self._in_flight = loop, asyncio.Semaphore(self._max_in_flight)
        if self._client is None:
            self._client = genai.Client(api_key=self._api_key, http_options=self._http_options)
        return self._client, self._in_flight

    async def embed_query(self, text: str) -> np.ndarray:
        return (await self._embed([text], "RETRIEVAL_QUERY"))[0]

    async def embed_passages(self, texts: list[str]) -> np.ndarray:
        if not texts:
            return np.empty((0, self.dim), dtype=np.float32)
        batches = [texts[i : i + self._batch_size] for i in range(0, len(texts), self._batch_size)]
        return np.concatenate(await asyncio.gather(*(self._embed(b, "RETRIEVAL_DOCUMENT") for b in batches)))

    async def _embed(self, texts: list[str], task_type: str) -> np.ndarray:
        client, in_flight = self._bind()
        # One Content per text: given plain strings, the SDK merges them into one multi-part content (one
        # vector) for the multimodal embedding models.
        contents = [types.Content(parts=[types.Part(text=t)]) for t in texts]
        config = types.EmbedContentConfig(task_type=task_type, output_dimensionality=self.dim)
        try:
            # Held through the backoff as well: a rate-limited API is not helped by other batches meanwhile.
            async with in_flight:
                async for attempt in AsyncRetrying(retry=retry_if_exception(_retryable),
                                                   stop=stop_after_attempt(self._attempts),
                                                   wait=wait_exponential(multiplier=self._backoff, max=8),
                                                   reraise=True):
                    with attempt:
                        reply = await client.aio.models.embed_content(model=self.model, contents=contents,
                                                                      config=config)
        except errors.APIError as exc:
            raise EmbeddingError(f"gemini embeddings {exc.code} {exc.status}: {exc.message}") from None
        except _TRANSPORT_ERRORS as exc:
            raise EmbeddingError(f"gemini embeddings unreachable after {self._attempts} tries: {exc!r}") from None
        except ValueError as exc:  # the SDK's parse error for a malformed reply
            raise EmbeddingError(f"gemini embeddings sent a malformed reply: {exc}") from None
        return self._vectors(reply, len(texts))

    def _vectors(self, reply: types.EmbedContentResponse, expected: int) -> np.ndarray:
        rows = [e.values or [] for e in reply.embeddings or []]
        if len(rows) != expected:
            raise EmbeddingError(f"gemini embeddings returned {len(rows)} vectors for {expected} texts")
        wrong = {len(r) for r in rows} - {self.dim}
        if wrong:
            raise EmbeddingError(f"gemini embeddings returned {min(wrong)}-d vectors; {self.dim}-d were asked for")
        vectors = np.asarray(rows, dtype=np.float32)
        norms = np.linalg.norm(vectors, axis=1, keepdims=True)
        return (vectors / np.where(norms == 0, 1, norms)).astype(np.float32)

    async def aclose(self) -> None:
        if self._client is not None:
            client, self._client = self._client, None
            await client.aio.aclose()
            client.close()  # the SDK opens a sync connection pool alongside the async one
