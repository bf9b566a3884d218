"""Script-based language detection: enough to route text to the right analyser and prompt."""

from __future__ import annotations

import re

_HANGUL = re.compile(r"[\uac00-\ud7a3\u1100-\u11ff\u3130-\u318f]")
_LETTER = re.compile(r"[^\W\d_]")


def hangul_share(text: str) -> float:
    letters = len(_LETTER.findall(text))
    return len(_HANGUL.findall(text)) / letters if letters else 0.0


def detect_language(text: str) -> str:
    """`ko` when Hangul makes up a fifth of the letters (Korean prose quotes English terms), else `en`."""
    return "ko" if hangul_share(text) >= 0.2 else "en"


def has_hangul(text: str) -> bool:
    return _HANGUL.search(text) is not None
