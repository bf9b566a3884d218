"""The original project's meta-planner API, kept as a thin door over DT-RAG's query planner.

    from apps.orchestration.src.meta_planner import analyze_complexity, generate_plan
    await analyze_complexity("Compare BM25 and dense retrieval")
    # {"complexity": "medium", "strategy": "multi_step", "parts": ["BM25", "dense retrieval"], "kind": "comparison"}
    await generate_plan("What is BM25 and how does dense retrieval work?")
    # {"strategy": "multi_step", "complexity": "medium", "reasoning": "...", "steps": ["intent", "plan", "retrieve",
    #  "compose", "cite", "validate", "respond"], "tools": [], "parts": [...], "planner": "rule", "elapsed_ms": ...}

Both were async in the original and stay so; `generate_plan` plans with the configured answer model when
there is one (its JSON validated, anything malformed falling back to the rules, as the original fell back
on a timeout). The dictionaries and where they differ from the original: `original_api`. This module is a
door (like `langgraph_pipeline`): it adds only the process's runtime, and nothing in the project imports it.
"""

from __future__ import annotations

from typing import Any

from apps.orchestration.src.original_api import analyze_complexity, plan_summary
from apps.orchestration.src.planner.search import planner_of
from apps.runtime import get_runtime

__all__ = ["analyze_complexity", "generate_plan"]


async def generate_plan(query: str, complexity: str | None = None, timeout: float = 10.0) -> dict[str, Any]:
    """The plan the answer graph's plan node would make. `complexity` is accepted for the original's
    callers and not needed; past `timeout` seconds the rule planner's plan is returned."""
    runtime = get_runtime()
    return await plan_summary(planner_of(runtime.pipelines, runtime.search.analyzer, runtime.settings), query, timeout)
