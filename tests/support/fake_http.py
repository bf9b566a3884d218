"""What every fake model server of the suite shares (fake_openai, fake_chat, fake_rerank, fake_gemini):
a threaded HTTP server on a free loopback port, requests recorded and each answered by the next scripted
step (or the default) taken under one lock, so concurrent callers each get their own, and stop. A fake
is a dataclass with `script`, `default` and `requests` that mixes in `FakeServer` and names its
`FakeHandler` subclass, which speaks only its API; the model fakes' steps extend `ScriptedReply`."""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, ClassVar


class FakeHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    @property
    def fake(self) -> Any:
        return self.server.fake

    def log_message(self, *args: object) -> None:
        pass  # not the test's output

    def scripted(self, **headers: str) -> tuple[dict, Any]:
        """The request's JSON body and the step that answers it; the request is recorded with its path, its
        body and the headers named (e.g. `auth="Authorization"`)."""
        body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))) or b"{}")
        request = {"path": self.path, "body": body, **{key: self.headers.get(h) for key, h in headers.items()}}
        return body, self.fake.take(request)

    def send_json(self, status: int, payload: object) -> None:
        self.send_raw(status, json.dumps(payload).encode())

    def send_raw(self, status: int, data: bytes, content_type: str = "application/json") -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        try:
            self.wfile.write(data)
        except BrokenPipeError:
            pass  # the client gave up first (a timeout under test), which is what a stall is scripted for


@dataclass
class ScriptedReply:
    """A step of a fake model server's script (each fake's own kinds and defaults extend it)."""

    kind: str = "ok"
    text: str = ""
    status: int = 200  # of kind "status"
    delay_s: float = 0.0  # stall this long first


def pieces(text: str) -> list[str]:
    """The text as a model streams it: a word a piece, each after the first with its leading space."""
    words = text.split(" ")
    return [word if i == 0 else " " + word for i, word in enumerate(words)]


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, fake: FakeServer, handler: type[FakeHandler]) -> None:
        super().__init__(("127.0.0.1", 0), handler)
        self.fake = fake


class FakeServer:
    handler: ClassVar[type[FakeHandler]]
    url_path: ClassVar[str] = ""  # what `url` ends with, e.g. "/v1"
    script: list
    default: Any
    requests: list[dict]

    def __post_init__(self) -> None:
        self.lock = threading.Lock()
        self._server = _Server(self, self.handler)
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    def take(self, request: dict) -> Any:
        """Record a request and return the step that answers it."""
        with self.lock:
            self.requests.append(request)
            return self.choose(request)

    def choose(self, request: dict) -> Any:
        return self.script.pop(0) if self.script else self.default

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}{self.url_path}"

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
