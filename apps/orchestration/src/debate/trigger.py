"""When a request is worth a debate (`DEBATE_TRIGGER`): `always`, or `uncertain`: only where the single
pass is weak, i.e. a sentence its sources do not support, low confidence, or retrieval legs that
disagree about what is relevant. A debate costs several calls; a confident, grounded single pass
has little to gain from one."""

from __future__ import annotations

from typing import Literal

Trigger = Literal["always", "uncertain"]


def should_debate(trigger: Trigger, confidence: float, unsupported: int = 0, legs_agree: bool = True,
                  min_confidence: float = 0.6) -> bool:
    if trigger == "always":
        return True
    return unsupported > 0 or confidence < min_confidence or not legs_agree
