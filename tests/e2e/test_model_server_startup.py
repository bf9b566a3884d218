"""`dtrag serve` with a model server that serves another model than LLM_MODEL: the server starts anyway,
says clearly at startup what is wrong, /health says degraded, and answers come from the extractive
composer until the model server is put right."""

from __future__ import annotations

import json
import time
from pathlib import Path

import httpx

from apps.core.migrations import upgrade
from tests.support.fake_chat import FakeChat
from tests.support.server import run_cli, running_server


def test_a_wrong_model_name_is_a_clear_startup_error_and_degraded_health(tmp_path: Path) -> None:
    chat = FakeChat(models=["qwen2.5-7b-instruct"])
    try:
        url = f"sqlite+aiosqlite:///{tmp_path / 'models.db'}"
        upgrade(url)
        with running_server(url, tmp_path, workers=1, ANSWER_PROVIDER="openai", LLM_BASE_URL=chat.url,
                            LLM_MODEL="llama-3.1-8b-instruct") as (base, env):
            log = next(tmp_path.glob("server-*.log"))
            deadline = time.monotonic() + 30
            while "not LLM_MODEL" not in log.read_text() and time.monotonic() < deadline:
                time.sleep(0.2)
            assert "the answer model server is not ready" in log.read_text()
            assert "serves 'qwen2.5-7b-instruct', not LLM_MODEL 'llama-3.1-8b-instruct'" in log.read_text()
            health = httpx.get(f"{base}/health", timeout=10).json()
            assert health["status"] == "degraded"
            assert health["llm"] == {**health["llm"], "provider": "openai", "model": "llama-3.1-8b-instruct",
                                     "state": "degraded"}
            doc = tmp_path / "dtrag.md"
            doc.write_text("# DT-RAG\n\nDT-RAG answers questions from a team's own documents, with citations.\n")
            assert run_cli(["ingest", str(doc)], env).returncode == 0
            done = run_cli(["keys", "create", "--scope", "read", "--json"], env)
            key = json.loads(done.stdout)["api_key"]
            r = httpx.post(f"{base}/answer", headers={"X-API-Key": key}, json={"q": "What is DT-RAG?"}, timeout=30)
            assert r.status_code == 200 and r.json()["provider"] == "extractive"  # the fallback, never a 5xx
            assert not any(req["path"].endswith("/chat/completions") for req in chat.requests)  # refused up front
    finally:
        chat.stop()
