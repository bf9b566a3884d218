"""A local server speaking the OpenAI embeddings API with scripted misbehaviour: a status, a body that
is not JSON, vectors of another dimension, another model's name. Vectors are hashed bags of words
(hashlib, so stable), deliberately not unit length. Requests are recorded."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import ClassVar

import numpy as np

from tests.support.fake_http import FakeHandler, FakeServer


def bag_of_words(text: str, dim: int) -> list[float]:
    vector = np.zeros(dim, dtype=np.float32)
    for word in text.lower().split():
        vector[int(hashlib.sha256(word.encode()).hexdigest(), 16) % dim] += 1.0
    vector[0] += 0.5  # never all zero, never unit length
    return (vector * 3).tolist()


class _Embeddings(FakeHandler):
    def do_POST(self) -> None:
        fake: FakeOpenAI = self.fake
        body, step = self.scripted(auth="Authorization")
        if step.isdigit():
            return self.send_json(int(step), {"error": {"message": f"scripted {step}"}})
        if step == "garbage":
            return self.send_raw(200, b"<html>not json</html>")
        dim = int(step.split(":")[1]) if step.startswith("dim:") else fake.dim
        model = step.split(":")[1] if step.startswith("model:") else fake.model
        data = [{"object": "embedding", "index": i, "embedding": bag_of_words(t, dim)}
                for i, t in enumerate(body["input"])]
        self.send_json(200, {"object": "list", "data": data[::-1], "model": model})  # order by index, not position


@dataclass
class FakeOpenAI(FakeServer):
    dim: int = 64
    model: str = "fake-embedder"
    script: list[str] = field(default_factory=list)  # e.g. ["503", "ok"]; "dim:32", "model:other", "garbage"
    requests: list[dict] = field(default_factory=list)
    default: ClassVar[str] = "ok"
    handler: ClassVar = _Embeddings
    url_path: ClassVar[str] = "/v1"
