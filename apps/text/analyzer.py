"""Language-aware lexical analysis for BM25; documents and queries go through the same function.

English: lowercase word tokens of two or more characters, NLTK stopwords removed, Snowball stemmer.
Korean (any text with Hangul): kiwipiepy morphological analysis keeping content morphemes (nouns,
verb and adjective stems, roots, numbers); Latin words inside Korean text take the English path, so
mixed text is handled per script.
"""

from __future__ import annotations

import re
import threading
from functools import lru_cache

import Stemmer

from apps.text.language import has_hangul
from apps.text.stopwords import ENGLISH_STOPWORDS

# Alphanumeric runs only: exactly what FTS5's unicode61 tokenizer re-splits into, so the SQLite and
# PostgreSQL indexes count the same tokens.
_WORD = re.compile(r"[^\W_]+")
# Kiwi tags kept as content: general/proper nouns, numerals, verb/adjective stems, roots, Hanja, numbers.
_KOREAN_CONTENT_TAGS = frozenset({"NNG", "NNP", "NR", "VV", "VA", "XR", "SH", "SN"})
_LATIN_TAG = "SL"


class Analyzer:
    def __init__(self) -> None:
        self._stemmer = Stemmer.Stemmer("english")
        self._kiwi = None
        self._kiwi_lock = threading.Lock()
        # A pure function of the text, and answer composition re-analyses the same chunks and
        # sentences for every question that retrieves them: Korean morphological analysis is the cost.
        self._cached = lru_cache(maxsize=16384)(self._analyse)

    def _english(self, text: str) -> list[str]:
        words = [w for w in _WORD.findall(text.lower()) if len(w) > 1 and w not in ENGLISH_STOPWORDS]
        return self._stemmer.stemWords(words)

    def _korean(self, text: str) -> list[str]:
        with self._kiwi_lock:
            if self._kiwi is None:
                from kiwipiepy import Kiwi

                self._kiwi = Kiwi()
            morphemes = self._kiwi.tokenize(text)
        tokens: list[str] = []
        latin: list[str] = []
        for m in morphemes:
            if m.tag == _LATIN_TAG:
                latin.append(m.form)
            elif m.tag in _KOREAN_CONTENT_TAGS:
                tokens.extend(_WORD.findall(m.form.lower()))
        if latin:
            tokens.extend(self._english(" ".join(latin)))
        return tokens

    def _analyse(self, text: str) -> tuple[str, ...]:
        return tuple(self._korean(text) if has_hangul(text) else self._english(text))

    def tokens(self, text: str) -> tuple[str, ...]:
        return self._cached(text)

    def query_terms(self, text: str, limit: int) -> list[str]:
        """Unique query terms in first-seen order, at most `limit` (bounds the cost of huge queries)."""
        return list(dict.fromkeys(self.tokens(text)))[:limit]


@lru_cache(maxsize=1)
def get_analyzer() -> Analyzer:
    return Analyzer()
