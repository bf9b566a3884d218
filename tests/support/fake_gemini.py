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
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

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
class Behaviour:
    kind: str = "ok"  # ok | status | malformed | empty | slow
    text: str = "Kimchi is fermented cabbage [1]."
    status: int = 200
    delay_s: float = 0.0
    dim: int | None = None  # embeddings: vectors of this size, whatever was asked for


@dataclass
class FakeGemini:
    script: list[Behaviour] = field(default_factory=list)
    requests: list[dict] = field(default_factory=list)
    default: Behaviour = field(default_factory=Behaviour)
    route: Callable[[str], Behaviour | None] | None = None  # prompt text -> behaviour
    peak_in_flight: int = 0

    def __post_init__(self) -> None:
        fake = self
        lock, active = threading.Lock(), 0

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args) -> None:
                pass

            def do_POST(self) -> None:
                nonlocal active
                with lock:
                    active += 1
                    fake.peak_in_flight = max(fake.peak_in_flight, active)
                try:
                    self._answer()
                finally:
                    with lock:
                        active -= 1

            def _answer(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))) or b"{}")
                with lock:  # concurrent batches: one scripted behaviour each
                    fake.requests.append({"path": self.path, "body": body, "key": self.headers.get("x-goog-api-key")})
                    b = fake.route(_prompt(body)) if fake.route else None
                    if b is None:
                        b = fake.script.pop(0) if fake.script else fake.default
                if b.delay_s:
                    time.sleep(b.delay_s)
                if b.kind == "status":
                    self._send(b.status, {"error": {"code": b.status, "message": "scripted failure",
                                                    "status": _STATUS_NAMES.get(b.status, "INTERNAL")}})
                    return
                if b.kind == "malformed":
                    self._raw(200, b"{not json", "application/json")
                    return
                embedding = self.path.split("?")[0].endswith(":batchEmbedContents")
                if b.kind == "empty":
                    self._send(200, {"embeddings": []} if embedding else
                               {"candidates": [{"content": {"parts": [], "role": "model"}, "finishReason": "SAFETY"}]})
                    return
                if embedding:
                    self._send(200, {"embeddings": [
                        {"values": bag_of_words(_text(r.get("content", {})),
                                                b.dim or r.get("outputDimensionality", _FULL_DIM))}
                        for r in body.get("requests", [])]})
                    return
                usage = {"promptTokenCount": 120, "candidatesTokenCount": 12, "totalTokenCount": 132}
                if ":streamGenerateContent" in self.path:
                    words = b.text.split(" ")
                    events = []
                    for i, word in enumerate(words):
                        piece = word if i == 0 else " " + word
                        chunk = {"candidates": [{"content": {"parts": [{"text": piece}], "role": "model"}}]}
                        if i == len(words) - 1:
                            chunk["usageMetadata"] = usage
                            chunk["candidates"][0]["finishReason"] = "STOP"
                        events.append(f"data: {json.dumps(chunk)}\r\n\r\n")
                    self._raw(200, "".join(events).encode(), "text/event-stream")
                    return
                self._send(200, {"candidates": [{"content": {"parts": [{"text": b.text}], "role": "model"},
                                                 "finishReason": "STOP"}], "usageMetadata": usage})

            def _send(self, status: int, payload: dict) -> None:
                self._raw(status, json.dumps(payload).encode(), "application/json")

            def _raw(self, status: int, data: bytes, content_type: str) -> None:
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                try:
                    self.wfile.write(data)
                except BrokenPipeError:
                    pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def stop(self) -> None:
        self._server.shutdown()
