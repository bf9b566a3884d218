"""A local server speaking the OpenAI embeddings API with scripted misbehaviour: a status, a body that
is not JSON, vectors of another dimension, another model's name. Vectors are hashed bags of words
(hashlib, so stable), deliberately not unit length. Requests are recorded."""

from __future__ import annotations

import hashlib
import json
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np


def bag_of_words(text: str, dim: int) -> list[float]:
    vector = np.zeros(dim, dtype=np.float32)
    for word in text.lower().split():
        vector[int(hashlib.sha256(word.encode()).hexdigest(), 16) % dim] += 1.0
    vector[0] += 0.5  # never all zero, never unit length
    return (vector * 3).tolist()


@dataclass
class FakeOpenAI:
    dim: int = 64
    model: str = "fake-embedder"
    script: list[str] = field(default_factory=list)  # e.g. ["503", "ok"]; "dim:32", "model:other", "garbage"
    requests: list[dict] = field(default_factory=list)

    def __post_init__(self) -> None:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args) -> None:
                pass

            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))) or b"{}")
                fake.requests.append({"path": self.path, "body": body, "auth": self.headers.get("Authorization")})
                step = fake.script.pop(0) if fake.script else "ok"
                if step.isdigit():
                    return self._send(int(step), {"error": {"message": f"scripted {step}"}})
                if step == "garbage":
                    return self._raw(200, b"<html>not json</html>")
                dim = int(step.split(":")[1]) if step.startswith("dim:") else fake.dim
                model = step.split(":")[1] if step.startswith("model:") else fake.model
                data = [{"object": "embedding", "index": i, "embedding": bag_of_words(t, dim)}
                        for i, t in enumerate(body["input"])]
                self._send(200, {"object": "list", "data": data[::-1], "model": model})  # order by index, not position

            def _send(self, status: int, payload: dict) -> None:
                self._raw(status, json.dumps(payload).encode())

            def _raw(self, status: int, data: bytes) -> None:
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
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
