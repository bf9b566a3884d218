"""Sentence splitting for English and Korean prose (chunking and answer composition share it)."""

from __future__ import annotations

import re

# A sentence ends at . ! ? (ASCII or full-width) plus closing quotes/brackets, before whitespace;
# line breaks always end one (Korean prose often ends a line with "...다" and no period).
# Every branch starts only where a whitespace run starts (after a terminator, or after a non-space),
# so a long run of spaces is scanned once, not once per position (the old `\s*\n\s*` was quadratic).
_BOUNDARY = re.compile(r"(?<=[.!?。！？][\"'”’)\]])\s+|(?<=[.!?。！？])\s+|(?<!\s)[^\S\n]*\n\s*")
_ABBREVIATIONS = frozenset(
    {"e.g.", "i.e.", "al.", "etc.", "vs.", "dr.", "mr.", "mrs.", "ms.", "fig.", "no.", "approx.", "cf."}
)


def split_sentences(text: str) -> list[str]:
    pieces = [p.strip() for p in _BOUNDARY.split(text) if p and p.strip()]
    sentences: list[list[str]] = []  # pieces joined once at the end: "e.g. e.g. ..." stays linear
    for piece in pieces:
        # Re-join a split made after a common abbreviation ("et al. found ...").
        if sentences and sentences[-1][-1].rsplit(" ", 1)[-1].lower() in _ABBREVIATIONS:
            sentences[-1].append(piece)
        else:
            sentences.append([piece])
    return [" ".join(parts) for parts in sentences]
