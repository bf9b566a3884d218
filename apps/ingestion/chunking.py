"""Sentence-aware chunking with a token budget and sentence-level overlap."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from apps.text.sentences import split_sentences

TokenCounter = Callable[[str], int]


def embed_input(title: str, chunk: str) -> str:
    """What a chunk is embedded and analysed as: the title travels with every chunk, since it often
    carries the words a query uses."""
    return f"{title}\n{chunk}" if title else chunk


@dataclass(frozen=True)
class ChunkDraft:
    text: str
    token_count: int


def _split_long(sentence: str, count: TokenCounter, budget: int) -> list[tuple[str, int]]:
    """A sentence over the budget is cut at word boundaries (or characters, for unspaced text)."""
    words = sentence.split() if " " in sentence.strip() else list(sentence)
    joiner = " " if " " in sentence.strip() else ""
    pieces: list[tuple[str, int]] = []
    current: list[str] = []
    for word in words:
        candidate = joiner.join([*current, word])
        if current and count(candidate) > budget:
            piece = joiner.join(current)
            pieces.append((piece, count(piece)))
            current = [word]
        else:
            current.append(word)
    if current:
        piece = joiner.join(current)
        pieces.append((piece, count(piece)))
    return pieces


def chunk_text(text: str, count: TokenCounter, max_tokens: int, overlap_tokens: int) -> list[ChunkDraft]:
    units: list[tuple[str, int]] = []
    for sentence in split_sentences(text):
        n = count(sentence)
        units.extend(_split_long(sentence, count, max_tokens) if n > max_tokens else [(sentence, n)])

    chunks: list[ChunkDraft] = []
    current: list[tuple[str, int]] = []
    size = 0
    for unit in units:
        if current and size + unit[1] > max_tokens:
            chunks.append(ChunkDraft(" ".join(s for s, _ in current), size))
            # Carry trailing sentences worth at most `overlap_tokens` into the next chunk.
            carried: list[tuple[str, int]] = []
            carried_size = 0
            for previous in reversed(current):
                if carried_size + previous[1] > overlap_tokens or carried_size + previous[1] + unit[1] > max_tokens:
                    break
                carried.insert(0, previous)
                carried_size += previous[1]
            current, size = carried, carried_size
        current.append(unit)
        size += unit[1]
    if current:
        chunks.append(ChunkDraft(" ".join(s for s, _ in current), size))
    return chunks
