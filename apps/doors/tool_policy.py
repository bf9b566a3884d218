"""The one gate every tool call passes, in (a client calling DT-RAG's MCP tools) and out (the answer
graph calling a registered server's), with the `tools_policy` flag on. Deny by default:

1. `tools_policy` off → an outbound call is refused (inbound calls then need only the REST key check);
2. a tool no server lists → refused (`unknown_tool`);
3. a tool the key's TOOLS_ALLOWLIST entries (its id, its name, "*") do not match → refused (`not_allowlisted`);
4. a destructive or open-world tool (MCP annotations; a tool that gives none is both) not in
   TOOLS_ALLOW_UNSAFE → refused (`unsafe`);
5. arguments that fail the tool's input schema (JSON Schema) → refused (`bad_arguments`);
6. past the request's TOOLS_MAX_CALLS calls or TOOLS_BUDGET_MS → refused (`over_budget`).

What the gate never needs to judge: a tool call asked for by retrieved text. The planner that proposes
calls (`tool_choice`) reads the question and the plan only, so a passage cannot name a call to make.
Every verdict is audited (`tool_audit`).
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from fnmatch import fnmatchcase
from functools import lru_cache
from typing import Any

from jsonschema import Draft202012Validator
from jsonschema.exceptions import SchemaError
from jsonschema.validators import validator_for

from apps.core.api_keys import KeyInfo
from apps.core.config import Settings
from apps.doors.tool_audit import AuditRow, ToolAudit


@dataclass(frozen=True)
class ToolFacts:
    """What the gate knows of a tool: the name allowlists use (`search`, `server/tool`), its schema, hints."""

    name: str
    input_schema: dict[str, Any]
    destructive: bool
    open_world: bool


@dataclass
class Budget:
    """One request's allowance of outbound calls: a count and a deadline."""

    max_calls: int
    deadline: float  # time.monotonic()
    calls: int = 0

    @classmethod
    def of(cls, settings: Settings) -> Budget:
        return cls(settings.tools_max_calls, time.monotonic() + settings.tools_budget_ms / 1000)

    def left_s(self) -> float:
        return max(self.deadline - time.monotonic(), 0.0)


@dataclass(frozen=True)
class Verdict:
    allowed: bool
    code: str
    reason: str


ALLOWED = Verdict(True, "allowed", "allowed")


@lru_cache(maxsize=256)
def _validator(schema_json: str) -> Draft202012Validator:
    schema = json.loads(schema_json)
    cls = validator_for(schema, default=Draft202012Validator)
    cls.check_schema(schema)
    return cls(schema)


def schema_errors(schema: dict[str, Any], arguments: dict[str, Any]) -> str | None:
    """The first way `arguments` fail `schema`, or None when they pass."""
    try:
        validator = _validator(json.dumps(schema, sort_keys=True))
    except SchemaError as exc:
        return f"the tool's input schema is not valid JSON Schema ({exc.message})"
    error = next(iter(sorted(validator.iter_errors(arguments), key=lambda e: list(e.path))), None)
    if error is None:
        return None
    where = "/".join(str(p) for p in error.path) or "arguments"
    return f"{where}: {error.message}"[:250]


class ToolGate:
    def __init__(self, settings: Settings, audit: ToolAudit) -> None:
        self.allowlist = settings.tools_allowlist
        self.unsafe_ok = tuple(p.strip() for p in settings.tools_allow_unsafe.split(",") if p.strip())
        self.audit = audit

    def allowlisted(self, key: KeyInfo | None, name: str) -> bool:
        owners = ([key.id, key.name] if key is not None else []) + ["*"]
        patterns = [p for owner in owners if owner for p in self.allowlist.get(owner, [])]
        return any(fnmatchcase(name, p) for p in patterns)

    def judge(self, direction: str, flags: dict[str, bool], key: KeyInfo | None, name: str,
              facts: ToolFacts | None, arguments: dict[str, Any], budget: Budget | None = None) -> Verdict:
        if direction == "out" and not flags.get("tools_policy", False):
            return Verdict(False, "policy_off", "tools_policy is off: outbound tool calls are denied by default")
        if facts is None:
            return Verdict(False, "unknown_tool", f"no registered server lists a tool named {name!r}")
        if not self.allowlisted(key, name):
            who = f"key {key.name or key.id!r}" if key is not None else "a call without a key"
            return Verdict(False, "not_allowlisted", f"TOOLS_ALLOWLIST does not allow {name!r} for {who}")
        if (facts.destructive or facts.open_world) and not any(fnmatchcase(name, p) for p in self.unsafe_ok):
            kind = "destructive" if facts.destructive else "open-world"
            return Verdict(False, "unsafe", f"{name!r} is {kind} and TOOLS_ALLOW_UNSAFE does not name it")
        problem = schema_errors(facts.input_schema, arguments)
        if problem is not None:
            return Verdict(False, "bad_arguments", problem)
        if budget is not None:
            if budget.calls >= budget.max_calls:
                return Verdict(False, "over_budget", f"this request made its {budget.max_calls} tool calls")
            if budget.left_s() <= 0:
                return Verdict(False, "over_budget", "this request's tool time (TOOLS_BUDGET_MS) is spent")
        return ALLOWED

    def record(self, verdict: Verdict, *, direction: str, request_id: str, key: KeyInfo | None, name: str,
               arguments: dict[str, Any], outcome: str | None = None, latency_ms: float | None = None) -> None:
        self.audit.record(AuditRow(request_id=request_id, direction=direction, key_id=key.id if key else None,
                                   tool=name, decision="allowed" if verdict.allowed else "denied", code=verdict.code,
                                   reason=verdict.reason, arguments=arguments, outcome=outcome,
                                   latency_ms=round(latency_ms, 2) if latency_ms is not None else None))
