"""The answer graph's `tools` node (the `ToolStep` it calls; `mcp_tools` on): propose calls from the
question and the plan (`tool_choice`), pass each through the policy gate (`tool_policy`), call what is
allowed (`mcp_client`), and turn results into evidence cited like passages.

Tool evidence has negative chunk ids (unique in the answer, never a stored chunk's) and the source
`tool:<server>/<name>` as its doc id. A DT-RAG peer's `search` result becomes one piece of evidence per
hit; any other tool's text becomes one, cut to TOOLS_RESULT_MAX_CHARS.
"""

from __future__ import annotations

import logging
import time

from apps.api.deps import current_key
from apps.doors.mcp_client import McpClient, RemoteTool, ToolCatalog, ToolResult
from apps.doors.observe import observed
from apps.doors.tool_choice import propose
from apps.doors.tool_policy import Budget, ToolFacts, ToolGate
from apps.llm.base import Evidence
from apps.orchestration.src.answer_models import AnswerRequest
from apps.runtime import Runtime

log = logging.getLogger(__name__)


def evidence_of(tool: RemoteTool, result: ToolResult, first_id: int, max_chars: int) -> list[Evidence]:
    source = f"tool:{tool.qualified}"
    hits = (result.structured or {}).get("hits")
    if isinstance(hits, list) and hits and all(isinstance(h, dict) and isinstance(h.get("text"), str) for h in hits):
        return [Evidence(first_id - i, source, str(h.get("title") or tool.title), h["text"][:max_chars],
                         float(h.get("score") or 0.0), h.get("source_url") or None) for i, h in enumerate(hits)]
    text = result.text.strip()[:max_chars]
    return [Evidence(first_id, source, tool.title, text, 1.0)] if text else []


class DoorToolStep:
    def __init__(self, runtime: Runtime, catalog: ToolCatalog, client: McpClient, gate: ToolGate) -> None:
        self.runtime = runtime
        self.catalog = catalog
        self.client = client
        self.gate = gate

    def _terms(self, text: str) -> set[str]:
        return set(self.runtime.search.analyzer.tokens(text))

    async def __call__(self, request: AnswerRequest, flags: dict[str, bool], parts: list[str], answered: list[bool],
                       ) -> tuple[list[Evidence], dict[int, list[int]], list[dict[str, str]]]:
        settings = self.runtime.settings
        budget = Budget.of(settings)
        key = current_key.get()
        servers, tools, unreachable = await self.catalog.tools(timeout_s=max(budget.left_s(), 0.1))
        notes = [{"node": "tools", "reason": f"MCP server {e} did not list its tools"} for e in unreachable]
        proposals = propose(request.question, parts, answered, tools, self._terms, settings.tools_match_min,
                            request.top_k)
        evidence: list[Evidence] = []
        by_part: dict[int, list[int]] = {}
        next_id = -1
        for proposal in proposals:
            tool = proposal.tool
            facts = ToolFacts(proposal.name, tool.input_schema, tool.destructive, tool.open_world) if tool else None
            verdict = self.gate.judge("out", flags, key, proposal.name, facts, proposal.arguments, budget)
            if not verdict.allowed or tool is None:
                self.gate.record(verdict, direction="out", request_id=request.request_id, key=key,
                                 name=proposal.name, arguments=proposal.arguments)
                notes.append({"node": "tools", "reason": f"{proposal.name} not called: {verdict.reason}"})
                continue
            budget.calls += 1
            start = time.perf_counter()
            outcome, result = "ok", None
            try:
                with observed("tools", proposal.name, request_id=request.request_id):
                    result = await self.client.call(servers[tool.server], tool.name, proposal.arguments,
                                                    max(budget.left_s(), 0.1))
            except TimeoutError:
                outcome = "timeout"
            except Exception as exc:  # the server failed: the answer goes on without it and says so
                outcome = "error"
                log.warning("tool call failed", extra={"tool": proposal.name, "error": repr(exc)})
            if result is not None and result.is_error:
                outcome = "error"
            self.gate.record(verdict, direction="out", request_id=request.request_id, key=key, name=proposal.name,
                             arguments=proposal.arguments, outcome=outcome,
                             latency_ms=(time.perf_counter() - start) * 1000)
            if outcome != "ok" or result is None:
                detail = f": {result.text[:200]}" if result is not None and result.text else ""
                notes.append({"node": "tools", "reason": f"{proposal.name} {outcome}{detail}"})
                continue
            found_here = evidence_of(tool, result, next_id, settings.tools_result_max_chars)
            next_id -= len(found_here)
            evidence.extend(found_here)
            by_part.setdefault(proposal.part, []).extend(e.chunk_id for e in found_here)
        return evidence, by_part, notes
