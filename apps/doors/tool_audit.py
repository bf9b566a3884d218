"""Every tool-call decision, three ways: a row in `tool_calls`, a log line, `dtrag_tool_decisions_total`.

Rows are buffered and written every second (`BufferedWriter`: a refused row never holds back the rest),
so a decision costs the call no database round trip; the log line and the counter are immediate.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass, field
from typing import Any

from sqlalchemy import insert, select
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from apps.core import metrics
from apps.core.flushed_log import FlushedLog
from apps.core.models import ToolCall, utcnow

log = logging.getLogger(__name__)

_MAX_VALUE_CHARS = 500  # arguments are kept to show what was asked, not to replay it


@dataclass
class AuditRow:
    request_id: str
    direction: str  # in | out
    key_id: str | None
    tool: str
    decision: str  # allowed | denied
    code: str  # allowed | policy_off | unknown_tool | not_allowlisted | unsafe | bad_arguments | over_budget
    reason: str
    arguments: dict[str, Any] = field(default_factory=dict)
    outcome: str | None = None  # ok | error | timeout, for calls made
    latency_ms: float | None = None


def _clipped(value: Any) -> Any:
    if isinstance(value, str):
        return value[:_MAX_VALUE_CHARS]
    if isinstance(value, dict):
        return {str(k)[:100]: _clipped(v) for k, v in list(value.items())[:50]}
    if isinstance(value, list):
        return [_clipped(v) for v in value[:50]]
    return value if isinstance(value, int | float | bool) or value is None else str(value)[:_MAX_VALUE_CHARS]


async def _insert(conn: AsyncConnection, rows: list[dict[str, Any]]) -> None:
    await conn.execute(insert(ToolCall), rows)


def _describe(row: dict[str, Any]) -> dict[str, Any]:
    return {"tool": row["tool"], "request_id": row["request_id"], "decision": row["decision"]}


class ToolAudit(FlushedLog[dict[str, Any]]):
    def __init__(self, engine: AsyncEngine) -> None:
        super().__init__("tool-audit", engine, _insert, _describe, interval_s=1.0)

    def record(self, row: AuditRow) -> None:
        metrics.TOOL_DECISIONS.labels(row.direction, row.decision, row.code).inc()
        fields = {k: v for k, v in asdict(row).items() if k != "arguments"} | {"argument_names": sorted(row.arguments)}
        log.log(logging.WARNING if row.decision == "denied" else logging.INFO, "tool decision", extra=fields)
        values = asdict(row)
        del values["code"]
        # The code leads the stored reason (`unsafe: ...`): one column to filter on, the detail after it.
        values.update(at=utcnow(), reason=f"{row.code}: {row.reason}"[:300], arguments=_clipped(row.arguments))
        self._writer.append(values)

    async def recent(self, request_id: str | None = None, limit: int = 100) -> list[dict[str, Any]]:
        """The newest decisions (of one request), newest first."""
        query = select(ToolCall).order_by(ToolCall.id.desc()).limit(limit)
        if request_id is not None:
            query = query.where(ToolCall.request_id == request_id)
        async with self._engine.connect() as conn:
            rows = (await conn.execute(query)).mappings().all()
        return [dict(r) for r in rows]
