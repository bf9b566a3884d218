"""Question type from surface cues, English and Korean: routes prompts and keys bandit states."""

from __future__ import annotations

import re

_QUESTION_CUES = {
    "what": ("what", "which", "무엇", "뭐", "어떤", "무슨"),
    "who": ("who", "whom", "누구", "누가"),
    "when": ("when", "언제", "몇 년", "날은", "연도"),
    "where": ("where", "어디"),
    "why": ("why", "왜"),
    "how": ("how", "어떻게", "얼마나", "몇"),
}
_YES_NO_OPENING = re.compile(r"(is|are|was|were|do|does|did|can|could|should|will|would|has|have|had)\b",
                             re.IGNORECASE)
# Checked on the stripped end of the text, not with `\s*\??\s*$` (quadratic on a run of spaces).
_YES_NO_ENDINGS = ("인가요", "입니까", "나요", "는가")


# English cues are whole words ("show" is not "how"); Korean cues are parts of eojeol (누구인가 ← 누구).
_CUE_PATTERNS = {
    kind: re.compile("|".join(rf"\b{c}\b" if c.isascii() else re.escape(c) for c in cues), re.IGNORECASE)
    for kind, cues in _QUESTION_CUES.items()
}


def question_type(question: str) -> str:
    """what/who/when/where/why/how by cue, `yesno` for polar questions, else `other` (e.g. a claim)."""
    for kind, pattern in _CUE_PATTERNS.items():
        if pattern.search(question):
            return kind
    return "yesno" if _is_yes_no(question) else "other"


def _is_yes_no(question: str) -> bool:
    if _YES_NO_OPENING.match(question.lstrip()):
        return True
    return question.rstrip().removesuffix("?").rstrip().endswith(_YES_NO_ENDINGS)
