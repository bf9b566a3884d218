"""Canary analysis: the verdict for a window of per-variant summaries."""

from __future__ import annotations

from apps.core.config import load_settings
from apps.rollout.canary import judge


def test_judge_verdicts() -> None:
    s = load_settings()

    def window(n: int, errors: int = 0, p95: float = 50.0, quality: float | None = None) -> dict:
        return {"requests": n, "errors": errors, "error_rate": errors / n if n else 0.0,
                "latency_ms": {"p50": p95 / 2, "p95": p95, "p99": p95}, "quality": quality,
                "quality_samples": n if quality is not None else 0}

    assert judge(window(5), window(100), s).outcome == "hold"
    assert judge(None, window(100), s).outcome == "hold"
    assert judge(window(200), window(200), s).outcome == "pass"
    assert judge(window(1000, errors=7), window(1000), s).outcome == "fail"  # 0.7 % > 0.5 % SLA
    assert judge(window(100, errors=5), window(100), s).outcome == "breach"  # 5 % > 2 × SLA
    assert judge(window(100, p95=150), window(100), s).outcome == "fail"
    assert judge(window(100, p95=250), window(100), s).outcome == "breach"
    assert judge(window(100, quality=0.55), window(100, quality=0.7), s).outcome == "fail"
    assert judge(window(100, quality=0.4), window(100, quality=0.7), s).outcome == "breach"


