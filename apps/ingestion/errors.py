"""Ingestion errors: each names the input it is about, so a person can fix it."""

from __future__ import annotations


class IngestError(ValueError):
    def __init__(self, source: str, message: str) -> None:
        super().__init__(f"{source}: {message}")
        self.source = source
        self.message = message

    def __reduce__(self):  # raised in the parser process, re-raised here: pickle by its two fields
        return (type(self), (self.source, self.message))


class EmbeddingMismatchError(RuntimeError):
    """The database holds vectors of another model or dimension than the configured provider."""


class AnalyzerMismatchError(EmbeddingMismatchError):
    """The lexical index was built with another Korean analyser than KOREAN_ANALYZER: Korean queries
    would be analysed differently from the text they should match."""
