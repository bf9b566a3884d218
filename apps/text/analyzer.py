"""Language-aware lexical analysis for BM25; documents and queries go through the same function.

English: lowercase word tokens of two or more characters, NLTK stopwords removed, Snowball stemmer.
Korean (any text with Hangul), by `KOREAN_ANALYZER`:
- `kiwi`: kiwipiepy morphological analysis keeping content morphemes (nouns, verb and adjective stems,
  roots, numbers). Its model costs ~510 MB of RSS per process and ~3 s to load.
- `bigram`: overlapping syllable bigrams of each Hangul word (a one-syllable word stays whole), the
  classic CJK indexing; no model. On korquad-ko it scores the same as Kiwi (BENCHMARKS.md).
Latin words inside Korean text take the English path, so mixed text is handled per script.
"""

from __future__ import annotations

import asyncio
import re
import sys
import threading
from concurrent.futures import ThreadPoolExecutor
from functools import lru_cache

import Stemmer
from cachetools import LRUCache

from apps.text.language import has_hangul
from apps.text.stopwords import ENGLISH_STOPWORDS

# Alphanumeric runs only: exactly what FTS5's unicode61 tokenizer re-splits into, so the SQLite and
# PostgreSQL indexes count the same tokens.
_WORD = re.compile(r"[^\W_]+")
# Kiwi tags kept as content: general/proper nouns, numerals, verb/adjective stems, roots, Hanja, numbers.
_KOREAN_CONTENT_TAGS = frozenset({"NNG", "NNP", "NR", "VV", "VA", "XR", "SH", "SN"})
_LATIN_TAG = "SL"
_HANGUL_RUNS = re.compile(r"([\uac00-\ud7a3\u1100-\u11ff\u3130-\u318f]+)")
KOREAN_ANALYZERS = ("kiwi", "bigram")
DEFAULT_CACHE_BYTES = 64 * 1024 * 1024
# One entry may take at most this share of the budget: a 10,000-character Korean text holds ~0.85 MB of
# tokens, and a few such queries must not flush the sentences every answer re-analyses.
_MAX_ENTRY_SHARE = 64


def _entry_bytes(text: str, tokens: tuple[str, ...]) -> int:
    """What an entry holds: its key, the tuple and its strings (shared strings count each time: an upper
    bound), plus the cache's own bookkeeping per entry."""
    return sys.getsizeof(text) + sys.getsizeof(tokens) + sum(map(sys.getsizeof, tokens)) + 200


def _script_runs(word: str) -> list[tuple[str, bool]]:
    """A word split into Hangul and non-Hangul runs: `gpt로` → (`gpt`, False), (`로`, True)."""
    return [(run, i % 2 == 1) for i, run in enumerate(_HANGUL_RUNS.split(word)) if run]


class Analyzer:
    """`tokens()` for threads (ingestion, grounding), `atokens()`/`aquery_terms()` for the event loop:
    a cache miss there runs on the analyser's own thread, so Korean analysis never blocks the loop."""

    def __init__(self, korean: str, cache_bytes: int = DEFAULT_CACHE_BYTES) -> None:
        if korean not in KOREAN_ANALYZERS:
            raise ValueError(f"unknown Korean analyser {korean!r}; choose one of {', '.join(KOREAN_ANALYZERS)}")
        self.korean = korean
        self._stemmer = Stemmer.Stemmer("english")
        self._kiwi = None
        # One Kiwi model (~500 MB) for the process: threads take turns on it instead of each loading one.
        self._kiwi_lock = threading.Lock()
        # A pure function of the text, and answer composition re-analyses the same chunks and
        # sentences for every question that retrieves them: Korean morphological analysis is the cost.
        # Bounded by bytes, not entries: entries range from a word to a 10,000-character query.
        self._cache: LRUCache[str, tuple[tuple[str, ...], int]] = LRUCache(
            maxsize=cache_bytes, getsizeof=lambda entry: entry[1])
        self._max_entry_bytes = cache_bytes // _MAX_ENTRY_SHARE
        self._cache_lock = threading.Lock()
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="analyse")

    def _english(self, text: str) -> list[str]:
        words = [w for w in _WORD.findall(text.lower()) if len(w) > 1 and w not in ENGLISH_STOPWORDS]
        return self._stemmer.stemWords(words)

    def _korean(self, text: str) -> list[str]:
        return self._bigrams(text) if self.korean == "bigram" else self._morphemes(text)

    def _bigrams(self, text: str) -> list[str]:
        tokens: list[str] = []
        latin: list[str] = []
        for word in _WORD.findall(text.lower()):
            for run, hangul in _script_runs(word):
                if not hangul:
                    latin.append(run)
                elif len(run) == 1:
                    tokens.append(run)
                else:
                    tokens.extend(run[i : i + 2] for i in range(len(run) - 1))
        if latin:
            tokens.extend(self._english(" ".join(latin)))
        return tokens

    def _morphemes(self, text: str) -> list[str]:
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

    def _cached(self, text: str) -> tuple[str, ...] | None:
        with self._cache_lock:
            entry = self._cache.get(text)
        return entry[0] if entry is not None else None

    def tokens(self, text: str) -> tuple[str, ...]:
        found = self._cached(text)
        if found is None:
            found = self._analyse(text)
            size = _entry_bytes(text, found)
            if size <= self._max_entry_bytes:  # a larger one is analysed again if it comes back
                with self._cache_lock:
                    self._cache[text] = (found, size)
        return found

    @property
    def cached_bytes(self) -> int:
        """The cache's size by the same count that bounds it."""
        with self._cache_lock:
            return int(self._cache.currsize)

    def clear(self) -> None:
        with self._cache_lock:
            self._cache.clear()

    async def atokens(self, text: str) -> tuple[str, ...]:
        found = self._cached(text)
        if found is not None:
            return found
        return await asyncio.get_running_loop().run_in_executor(self._executor, self.tokens, text)

    def query_terms(self, text: str, limit: int) -> list[str]:
        """Unique query terms in first-seen order, at most `limit` (bounds the cost of huge queries)."""
        return list(dict.fromkeys(self.tokens(text)))[:limit]

    async def aquery_terms(self, text: str, limit: int) -> list[str]:
        return list(dict.fromkeys(await self.atokens(text)))[:limit]


@lru_cache(maxsize=4)
def get_analyzer(korean: str, cache_bytes: int = DEFAULT_CACHE_BYTES) -> Analyzer:
    """One analyser per Korean method (and cache budget) per process: the Kiwi model loads once. The
    method is the caller's to pass (the runtime passes `KOREAN_ANALYZER`); nothing here reads settings."""
    return Analyzer(korean, cache_bytes)
