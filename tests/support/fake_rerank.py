"""A local reranking server in either shape servers speak: `tei` (text-embeddings-inference:
`{"query", "texts"}` → `[{"index", "score"}]`) or `cohere` (Cohere, Jina, vLLM, Infinity:
`{"query", "documents"}` → `{"results": [{"index", "relevance_score"}]}`). Results come back best first,
as real servers send them, not in the documents' order. Requests are recorded.

Scores are a plain relevance stand-in: the share of the query's words a document contains, plus a bonus
for documents containing `favourite`, so a test can make the reranker's order differ from the fused one.
Scripted replies: "ok", a status ("500"), "slow" (sleeps `delay_s`), "garbage".
"""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


def relevance(query: str, document: str, favourite: str | None) -> float:
    def words(text: str) -> set[str]:
        return {w.strip(".,?!").lower() for w in text.split()} - {""}

    asked, there = words(query), words(document)
    score = len(asked & there) / max(len(asked), 1)
    return round(score / 2 + (0.5 if favourite and favourite.lower() in there else 0.0), 6)


@dataclass
class FakeReranker:
    shape: str = "tei"  # tei | cohere
    favourite: str | None = None
    script: list[str] = field(default_factory=list)
    default: str = "ok"
    delay_s: float = 1.0
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
                step = fake.script.pop(0) if fake.script else fake.default
                if step.isdigit():
                    return self._send(int(step), json.dumps({"error": f"scripted {step}"}).encode())
                if step == "garbage":
                    return self._send(200, b"<html>not json</html>")
                if step == "slow":
                    time.sleep(fake.delay_s)
                documents = body["texts"] if fake.shape == "tei" else body["documents"]
                scored = sorted(((i, relevance(body["query"], d, fake.favourite)) for i, d in enumerate(documents)),
                                key=lambda p: -p[1])
                if fake.shape == "tei":
                    payload: object = [{"index": i, "score": s} for i, s in scored]
                else:
                    payload = {"results": [{"index": i, "relevance_score": s} for i, s in scored[: body.get("top_n")]]}
                self._send(200, json.dumps(payload).encode())

            def _send(self, status: int, data: bytes) -> None:
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
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
