"""The embedding provider interface."""

from __future__ import annotations

from typing import Protocol

import numpy as np


class EmbeddingError(RuntimeError):
    """A provider could not produce vectors (every replica failed, or a reply was unusable)."""


class EmbeddingProvider(Protocol):
    """Vectors are float32 and L2-normalised, so a dot product is the cosine similarity.

    `name` is the model's identity: vectors are stored under it, and two providers with the same
    identity (the same weights in-process or behind a server) produce interchangeable vectors.
    """

    name: str
    dim: int

    async def ready(self) -> None:
        """Learn what must be asked (a remote model's dimension); a no-op in-process."""
        ...

    async def embed_query(self, text: str) -> np.ndarray: ...

    async def embed_passages(self, texts: list[str]) -> np.ndarray: ...

    def count_tokens(self, text: str) -> int:
        """Model tokens of a passage without the fixed prefix/special-token overhead."""
        ...

    async def aclose(self) -> None: ...
