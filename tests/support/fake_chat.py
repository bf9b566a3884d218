"""A local server speaking the OpenAI chat completions API (`POST /chat/completions`, plain and as
server-sent events, and `GET /models`) with scripted misbehaviour: a status, a stall, a body that is not
JSON, another model's name, no usage. Requests are recorded. The real model server of the suite is
llama.cpp's (tests/support/llama_server.py); this one misbehaves on demand, which a real one does not."""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


@dataclass
class Reply:
    kind: str = "ok"  # ok | status | slow | garbage | empty
    text: str = "Vitamin D deficiency causes bone loss [1]."
    status: int = 200
    delay_s: float = 0.0
    model: str | None = None  # the model the reply names (default: the one asked for)
    usage: bool = True  # include token usage


@dataclass
class FakeChat:
    models: list[str] = field(default_factory=lambda: ["fake-chat"])
    script: list[Reply] = field(default_factory=list)
    default: Reply = field(default_factory=Reply)
    requests: list[dict] = field(default_factory=list)

    def __post_init__(self) -> None:
        fake = self
        lock = threading.Lock()

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args) -> None:
                pass

            def do_GET(self) -> None:
                if self.path.rstrip("/").endswith("/models"):
                    return self._json(200, {"object": "list", "data": [{"id": m, "object": "model"} for m in fake.models]})
                self._json(404, {"error": {"message": "no such route"}})

            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))) or b"{}")
                with lock:
                    fake.requests.append({"path": self.path, "body": body, "auth": self.headers.get("Authorization")})
                    reply = fake.script.pop(0) if fake.script else fake.default
                if reply.delay_s:
                    time.sleep(reply.delay_s)
                if reply.kind == "status":
                    return self._json(reply.status, {"error": {"message": f"scripted {reply.status}"}})
                if reply.kind == "garbage":
                    return self._raw(200, b"<html>not json</html>", "text/html")
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
                self._json(200, payload)

            def _stream(self, model: str, text: str, usage: dict | None) -> None:
                self.send_response(200)
                self.send_header("Content-Type", "text/event-stream")
                self.send_header("Connection", "close")  # the body ends when the connection does
                self.end_headers()
                self.close_connection = True
                words = text.split(" ")
                for i, word in enumerate(words):
                    piece = word if i == 0 else " " + word
                    self._event({"model": model, "choices": [{"index": 0, "delta": {"content": piece}}]})
                self._event({"model": model, "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]})
                if usage:
                    self._event({"model": model, "choices": [], "usage": usage})
                self.wfile.write(b"data: [DONE]\n\n")
                self.wfile.flush()

            def _event(self, payload: dict) -> None:
                self.wfile.write(f"data: {json.dumps(payload)}\n\n".encode())
                self.wfile.flush()

            def _json(self, status: int, payload: dict) -> None:
                self._raw(status, json.dumps(payload).encode(), "application/json")

            def _raw(self, status: int, data: bytes, content_type: str) -> None:
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}/v1"

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
