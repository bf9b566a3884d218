"""A local HTTP server speaking the Gemini REST API (generateContent, streamGenerateContent?alt=sse,
and batchEmbedContents, the one embedding endpoint the SDK calls for the Gemini API).

Each request takes the next scripted behaviour: reply with text, fail with a status, send a malformed
body, reply with no text (no vectors), or stall. Concurrent callers (debating agents, embedding
batches) make the order of requests unpredictable, so `route` may pick the behaviour from the prompt
(or the texts to embed) instead; it returns None to fall through to the script. Requests are recorded
so tests can check what the SDK sent, and `peak_in_flight` says how many were served at once.

Embeddings are hashed bags of words (hashlib, so stable across processes): texts sharing words are
near, and the vectors are deliberately not unit length.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import ClassVar

from tests.support.fake_http import FakeHandler, FakeServer, ScriptedReply, pieces
from tests.support.fake_openai import bag_of_words

_STATUS_NAMES = {400: "INVALID_ARGUMENT", 429: "RESOURCE_EXHAUSTED"}
_FULL_DIM = 3072  # gemini-embedding-001's size when no outputDimensionality is asked for


def _text(content: dict) -> str:
    return "\n".join(part.get("text", "") for part in content.get("parts", []))


def _prompt(body: dict) -> str:
    """A generation's prompt, or every text of an embedding batch."""
    contents = body.get("contents") or [r.get("content", {}) for r in body.get("requests", [])]
    return "\n".join(_text(content) for content in contents)


@dataclass
class Behaviour(ScriptedReply):
    """kind: ok | slow (ok, named for its `delay_s`, which any kind waits first) | status | malformed | empty."""

    text: str = "Kimchi is fermented cabbage [1]."
    dim: int | None = None  # embeddings: vectors of this size, whatever was asked for


class _GenerativeLanguage(FakeHandler):
    protocol_version = "HTTP/1.0"  # a connection a request, as the SDK has always been served here

    def do_POST(self) -> None:
        fake: FakeGemini = self.fake
        with fake.lock:
            fake._in_flight += 1
            fake.peak_in_flight = max(fake.peak_in_flight, fake._in_flight)
        try:
            self._answer()
        finally:
            with fake.lock:
                fake._in_flight -= 1

    def _answer(self) -> None:
        body, b = self.scripted(key="x-goog-api-key")
        if b.delay_s:
            time.sleep(b.delay_s)
        if b.kind == "status":
            self.send_json(b.status, {"error": {"code": b.status, "message": "scripted failure",
                                                "status": _STATUS_NAMES.get(b.status, "INTERNAL")}})
            return
        if b.kind == "malformed":
            self.send_raw(200, b"{not json")
            return
        embedding = self.path.split("?")[0].endswith(":batchEmbedContents")
        if b.kind == "empty":
            self.send_json(200, {"embeddings": []} if embedding else
                           {"candidates": [{"content": {"parts": [], "role": "model"}, "finishReason": "SAFETY"}]})
            return
        if embedding:
            self.send_json(200, {"embeddings": [
                {"values": bag_of_words(_text(r.get("content", {})),
                                        b.dim or r.get("outputDimensionality", _FULL_DIM))}
                for r in body.get("requests", [])]})
            return
        usage = {"promptTokenCount": 120, "candidatesTokenCount": 12, "totalTokenCount": 132}
        if ":streamGenerateContent" in self.path:
            events = []
            streamed = pieces(b.text)
            for i, piece in enumerate(streamed):
                chunk = {"candidates": [{"content": {"parts": [{"text": piece}], "role": "model"}}]}
                if i == len(streamed) - 1:
                    chunk["usageMetadata"] = usage
                    chunk["candidates"][0]["finishReason"] = "STOP"
                events.append(f"data: {json.dumps(chunk)}\r\n\r\n")
            self.send_raw(200, "".join(events).encode(), "text/event-stream")
            return
        self.send_json(200, {"candidates": [{"content": {"parts": [{"text": b.text}], "role": "model"},
                                             "finishReason": "STOP"}], "usageMetadata": usage})


@dataclass
class FakeGemini(FakeServer):
    script: list[Behaviour] = field(default_factory=list)
    requests: list[dict] = field(default_factory=list)
    default: Behaviour = field(default_factory=Behaviour)
    route: Callable[[str], Behaviour | None] | None = None  # prompt text -> behaviour
    peak_in_flight: int = 0
    _in_flight: int = field(default=0, init=False, repr=False)
    handler: ClassVar = _GenerativeLanguage

    def choose(self, request: dict) -> Behaviour:
        """Concurrent batches: one scripted behaviour each, unless `route` picks one by the prompt."""
        routed = self.route(_prompt(request["body"])) if self.route else None
        return routed if routed is not None else super().choose(request)
