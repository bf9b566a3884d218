"""Which tools a question needs: offline rules over the question and the plan, nothing else.

- An explicit mention, `@server/tool` (or `@tool` when one server has it, or `@server` when the server
  has one tool), proposes that tool.
- A plan part no document answers proposes the registered tool whose description (the server's, the
  tool's title and description) holds at least TOOLS_MATCH_MIN of the part's content terms.

Retrieved passages are never an input here: the functions take the question, the plan's parts and
whether each part was answered, so a document that says "call delete_all" proposes nothing.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from apps.doors.mcp_client import RemoteTool

MENTION = re.compile(r"(?<![\w@/.])@([A-Za-z0-9_-]+(?:/[A-Za-z0-9_.-]+)?)")
# Where a tool takes its text, by the names tools give that field.
TEXT_FIELDS = ("query", "q", "question", "text", "input", "prompt")
COUNT_FIELDS = ("top_k", "final_topk", "limit", "k", "max_results")


@dataclass(frozen=True)
class Proposal:
    name: str  # `server/tool` when resolved, else the mention as written
    tool: RemoteTool | None
    arguments: dict[str, Any] = field(default_factory=dict)
    why: str = ""
    part: int = 0  # the plan part its result answers (a mention answers the first)


def mentions(text: str) -> list[str]:
    return list(dict.fromkeys(MENTION.findall(text)))


def without_mentions(text: str) -> str:
    return " ".join(MENTION.sub(" ", text).split())


def resolve(mention: str, tools: Sequence[RemoteTool]) -> RemoteTool | None:
    if "/" in mention:
        return next((t for t in tools if t.qualified == mention), None)
    named = [t for t in tools if t.name == mention]
    if len(named) == 1:
        return named[0]
    served = [t for t in tools if t.server == mention]
    return served[0] if len(served) == 1 else None


def arguments_for(tool: RemoteTool, text: str, top_k: int) -> dict[str, Any]:
    """The text into the tool's text field, the answer's top_k into a count field; nothing else is guessed
    (a tool that needs more fails the schema check and is not called)."""
    props: dict[str, Any] = tool.input_schema.get("properties") or {}
    required = tool.input_schema.get("required") or []

    def is_string(name: str) -> bool:
        kind = props.get(name, {}).get("type")
        return kind in (None, "string") or (isinstance(kind, list) and "string" in kind)

    field_name = next((f for f in TEXT_FIELDS if f in props and is_string(f)), None)
    if field_name is None:
        strings = [r for r in required if is_string(r)]
        field_name = strings[0] if len(strings) == 1 else None
    arguments: dict[str, Any] = {field_name: text} if field_name else {}
    for name in COUNT_FIELDS:
        spec = props.get(name)
        if isinstance(spec, dict) and spec.get("type") == "integer":
            low, high = spec.get("minimum", 1), spec.get("maximum", top_k)
            arguments[name] = max(low, min(high, top_k))
            break
    return arguments


def match(part_terms: set[str], tool_terms: set[str]) -> float:
    """The share of the part's content terms the tool's description holds."""
    return len(part_terms & tool_terms) / len(part_terms) if part_terms else 0.0


def propose(question: str, parts: Sequence[str], answered: Sequence[bool], tools: Sequence[RemoteTool],
            terms: Callable[[str], set[str]], match_min: float, top_k: int) -> list[Proposal]:
    proposals: list[Proposal] = []
    text = without_mentions(question)
    for mention in mentions(question):
        tool = resolve(mention, tools)
        proposals.append(Proposal(tool.qualified if tool else mention, tool,
                                  arguments_for(tool, text, top_k) if tool else {}, "mentioned in the question"))
    described = [(t, terms(" ".join((t.server_description, t.title, t.description, t.name)))) for t in tools]
    for index, (part, ok) in enumerate(zip(parts, answered)):
        if ok or not described:
            continue
        part_terms = terms(without_mentions(part))
        score, best = max(((match(part_terms, d), t) for t, d in described), key=lambda s: s[0])
        if score >= match_min:
            proposals.append(Proposal(best.qualified, best, arguments_for(best, without_mentions(part), top_k),
                                      f"no document answers part {index + 1}; its description matches {score:.2f}",
                                      index))
    unique: dict[str, Proposal] = {}
    for p in proposals:
        unique.setdefault(p.name + json.dumps(p.arguments, sort_keys=True, default=str), p)
    return list(unique.values())
