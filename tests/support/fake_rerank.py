"""A local reranking server in either shape servers speak: `tei` (text-embeddings-inference:
`{"query", "texts"}` → `[{"index", "score"}]`) or `cohere` (Cohere, Jina, vLLM, Infinity:
`{"query", "documents"}` → `{"results": [{"index", "relevance_score"}]}`). Results come back best first,
as real servers send them, not in the documents' order. Requests are recorded.

Scores are a plain relevance stand-in: the share of the query's words a document contains, plus a bonus
for documents containing `favourite`, so a test can make the reranker's order differ from the fused one.
Scripted replies: "ok", a status ("500"), "slow" (sleeps `delay_s`), "garbage".
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import ClassVar

from tests.support.fake_http import FakeHandler, FakeServer


def relevance(query: str, document: str, favourite: str | None) -> float:
    def words(text: str) -> set[str]:
        return {w.strip(".,?!").lower() for w in text.split()} - {""}

    asked, there = words(query), words(document)
    score = len(asked & there) / max(len(asked), 1)
    return round(score / 2 + (0.5 if favourite and favourite.lower() in there else 0.0), 6)


class _Rerank(FakeHandler):
    def do_POST(self) -> None:
        fake: FakeReranker = self.fake
        body, step = self.scripted(auth="Authorization")
        if step.isdigit():
            return self.send_json(int(step), {"error": f"scripted {step}"})
        if step == "garbage":
            return self.send_raw(200, b"<html>not json</html>")
        if step == "slow":
            time.sleep(fake.delay_s)
        documents = body["texts"] if fake.shape == "tei" else body["documents"]
        scored = sorted(((i, relevance(body["query"], d, fake.favourite)) for i, d in enumerate(documents)),
                        key=lambda p: -p[1])
        if fake.shape == "tei":
            payload: object = [{"index": i, "score": s} for i, s in scored]
        else:
            payload = {"results": [{"index": i, "relevance_score": s} for i, s in scored[: body.get("top_n")]]}
        self.send_json(200, payload)


@dataclass
class FakeReranker(FakeServer):
    shape: str = "tei"  # tei | cohere
    favourite: str | None = None
    script: list[str] = field(default_factory=list)
    default: str = "ok"
    delay_s: float = 1.0
    requests: list[dict] = field(default_factory=list)
    handler: ClassVar = _Rerank
