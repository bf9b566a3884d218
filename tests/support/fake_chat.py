"""A local server speaking the OpenAI chat completions API (`POST /chat/completions`, plain and as
server-sent events, and `GET /models`) with scripted misbehaviour: a status, a stall, a body that is not
JSON, another model's name, no usage. Requests are recorded. The real model server of the suite is
llama.cpp's (tests/support/llama_server.py); this one misbehaves on demand, which a real one does not."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from typing import ClassVar

from tests.support.fake_http import FakeHandler, FakeServer, ScriptedReply, pieces


@dataclass
class Reply(ScriptedReply):
    """kind: ok | slow (ok, named for its `delay_s`, which any kind waits first) | status | garbage | empty."""

    text: str = "Vitamin D deficiency causes bone loss [1]."
    model: str | None = None  # the model the reply names (default: the one asked for)
    usage: bool = True  # include token usage


class _ChatCompletions(FakeHandler):
    def do_GET(self) -> None:
        if self.path.rstrip("/").endswith("/models"):
            return self.send_json(200, {"object": "list", "data": [{"id": m, "object": "model"} for m in self.fake.models]})
        self.send_json(404, {"error": {"message": "no such route"}})

    def do_POST(self) -> None:
        body, reply = self.scripted(auth="Authorization")
        if reply.delay_s:
            time.sleep(reply.delay_s)
        if reply.kind == "status":
            return self.send_json(reply.status, {"error": {"message": f"scripted {reply.status}"}})
        if reply.kind == "garbage":
            return self.send_raw(200, b"<html>not json</html>", "text/html")
        text = "" if reply.kind == "empty" else reply.text
        model = reply.model or body.get("model")
        prompt = sum(len(m.get("content", "").split()) for m in body.get("messages", []))
        usage = {"prompt_tokens": prompt, "completion_tokens": len(text.split()),
                 "total_tokens": prompt + len(text.split())} if reply.usage else None
        if body.get("stream"):
            return self._stream(model, text, usage)
        payload = {"id": "x", "object": "chat.completion", "model": model,
                   "choices": [{"index": 0, "finish_reason": "stop",
                                "message": {"role": "assistant", "content": text}}]}
        if usage:
            payload["usage"] = usage
        self.send_json(200, payload)

    def _stream(self, model: str, text: str, usage: dict | None) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Connection", "close")  # the body ends when the connection does
        self.end_headers()
        self.close_connection = True
        for piece in pieces(text):
            self._event({"model": model, "choices": [{"index": 0, "delta": {"content": piece}}]})
        self._event({"model": model, "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]})
        if usage:
            self._event({"model": model, "choices": [], "usage": usage})
        self.wfile.write(b"data: [DONE]\n\n")
        self.wfile.flush()

    def _event(self, payload: dict) -> None:
        self.wfile.write(f"data: {json.dumps(payload)}\n\n".encode())
        self.wfile.flush()


@dataclass
class FakeChat(FakeServer):
    models: list[str] = field(default_factory=lambda: ["fake-chat"])
    script: list[Reply] = field(default_factory=list)
    default: Reply = field(default_factory=Reply)
    requests: list[dict] = field(default_factory=list)
    handler: ClassVar = _ChatCompletions
    url_path: ClassVar[str] = "/v1"
