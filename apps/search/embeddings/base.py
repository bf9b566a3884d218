"""The embedding provider interface."""

from __future__ import annotations

from typing import Protocol

import numpy as np


class EmbeddingProvider(Protocol):
    """Vectors are float32 and L2-normalised, so a dot product is the cosine similarity."""

    name: str
    dim: int

    async def embed_query(self, text: str) -> np.ndarray: ...

    async def embed_passages(self, texts: list[str]) -> np.ndarray: ...

    def count_tokens(self, text: str) -> int:
        """Model tokens of a passage without the fixed prefix/special-token overhead."""
        ...
