"""The original project's meta-planner API, kept as a thin door over DT-RAG's query planner.

    from apps.orchestration.src.meta_planner import analyze_complexity, generate_plan
    await analyze_complexity("Compare BM25 and dense retrieval")
    # {"complexity": "medium", "strategy": "multi_step", "parts": ["BM25", "dense retrieval"], "kind": "comparison"}
    await generate_plan("What is BM25 and how does dense retrieval work?")
    # {"strategy": "multi_step", "complexity": "medium", "reasoning": "...", "steps": ["intent", "plan", "retrieve",
    #  "compose", "cite", "validate", "respond"], "tools": [], "parts": [...], "planner": "rule", "elapsed_ms": ...}

Both were async in the original and stay so. Where ours differs: complexity comes from the parts the
question asks (one part: simple/direct; two: medium; three or more: complex; multi_step whenever it
splits), not from its length or words like "analyze"; `generate_plan` plans with the configured answer
model when there is one (its JSON validated, anything malformed falling back to the rules, as the
original fell back on a timeout) and lists DT-RAG's real graph steps; `tools` is empty (the original
named tools it never had). This module is a door (like `langgraph_pipeline`): it reaches the process
runtime, and nothing in the project imports it.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from apps.orchestration.src.planner.plan import Plan
from apps.orchestration.src.planner.search import planner_of
from apps.runtime import get_runtime
from apps.text.compound import split_question

log = logging.getLogger(__name__)

STEPS = ["intent", "plan", "retrieve", "compose", "cite", "validate", "respond"]


def _complexity(parts: int) -> str:
    return "simple" if parts <= 1 else "medium" if parts == 2 else "complex"


async def analyze_complexity(query: str) -> dict[str, Any]:
    """The rule planner's view of a query: {complexity, strategy, parts, kind}. No model, no I/O."""
    split = split_question(query)
    return {"complexity": _complexity(len(split.parts)), "strategy": "multi_step" if split.compound else "direct",
            "parts": [p.text for p in split.parts], "kind": split.kind}


def _plan_dict(plan: Plan) -> dict[str, Any]:
    parts = [p.text for p in plan.parts]
    reasoning = (f"{len(parts)} parts ({plan.kind}), each retrieved with its own strategy and answered from its "
                 "own evidence" if plan.compound else "one question: retrieved and answered as asked")
    if plan.fell_back:
        reasoning += f"; the model's plan was refused ({plan.fell_back})"
    return {"strategy": "multi_step" if plan.compound else "direct", "complexity": _complexity(len(parts)),
            "reasoning": reasoning, "steps": STEPS, "tools": [], "parts": parts, "planner": plan.planner,
            "kind": plan.kind, "elapsed_ms": plan.elapsed_ms}


async def generate_plan(query: str, complexity: str | None = None, timeout: float = 10.0) -> dict[str, Any]:
    """The plan the answer graph's plan node would make. `complexity` is accepted for the original's
    callers and not needed; past `timeout` seconds the rule planner's plan is returned."""
    runtime = get_runtime()
    planner = planner_of(runtime.pipelines, runtime.search.analyzer, runtime.settings)
    try:
        plan = await asyncio.wait_for(planner.plan(query), timeout=timeout)
    except TimeoutError:
        log.warning("planning timed out; the rule plan stands", extra={"timeout_s": timeout})
        plan = planner.rule_plan(query, fell_back=f"the model did not answer within {timeout} s")
    return _plan_dict(plan)
