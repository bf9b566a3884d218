"""Answers from any server speaking the OpenAI `/v1/chat/completions` API: vLLM, llama.cpp's server,
Ollama, TGI, LM Studio, or a hosted API.

Plain httpx rather than the `openai` SDK: the project already talks to OpenAI-style embedding servers
this way, the replicas of one model share `ReplicaPool` with them (one SDK client is bound to one base
URL), and retries are tenacity's here rather than the SDK's own. The streaming protocol is a few lines
of server-sent events.

- Calls go to the healthy replica with the fewest in flight; 408/429/5xx, timeouts and refused
  connections are retried with exponential backoff, on another replica when there is one.
- A wrong model name is a clear error: the reply's (or `/models`') served model is checked against
  LLM_MODEL; 401/403/404 name the setting to look at. None of them is retried.
- Usage comes from the reply (streams ask for it with `stream_options.include_usage`); a server that
  sends none is counted here (`estimated_tokens`). Prices are per million tokens.
- `status()` is what /health shows: the last call's outcome and latency, errors, and `probe()`'s
  check of every replica's `/models`. The provider never connects when it is built, so a server that
  is down when DT-RAG starts only makes answers fall back (the graph's compose fallback) until it is up.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import httpx
from tenacity import AsyncRetrying, retry_if_exception_type, stop_after_attempt, wait_exponential

from apps.core.replicas import Replica, ReplicaPool
from apps.llm import prompts
from apps.llm.base import ComposeRequest, Evidence, Generation, LLMError, Usage, estimated_tokens, priced
from apps.text.language import detect_language

_RETRY_STATUSES = {408, 429, 500, 502, 503, 504}
_JUDGE_TOKENS = 8


class _Transient(LLMError):
    """Worth another attempt (perhaps on another replica)."""


def same_model(served: str, configured: str) -> bool:
    """Servers name what they serve in their own way (OpenAI adds a date, Ollama a `:latest` tag, vLLM
    echoes the request); one name inside the other is the same model, anything else is another."""
    a, b = served.lower(), configured.lower()
    return a in b or b in a


def _error_message(reply: httpx.Response) -> str:
    try:
        body = reply.json()
    except ValueError:
        return reply.text[:200]
    error = body.get("error") if isinstance(body, dict) else None
    if isinstance(error, dict):
        return str(error.get("message") or error)[:300]
    return str(error or body)[:300]


@dataclass
class ServerHealth:
    """What the provider saw of its server, for /health and the dashboard."""

    state: str = "unknown"  # ok | degraded | unknown (nothing asked yet)
    calls: int = 0
    errors: int = 0
    last_error: str | None = None
    latency_ms: float | None = None  # the last successful call
    served: dict[str, list[str]] = field(default_factory=dict)  # replica -> models its /models lists

    def succeeded(self, elapsed_s: float) -> None:
        self.calls += 1
        self.state, self.latency_ms = "ok", round(elapsed_s * 1000, 2)

    def failed(self, error: str) -> None:
        self.calls += 1
        self.errors += 1
        self.state, self.last_error = "degraded", error


class OpenAIChatProvider:
    name = "openai"
    can_judge = True

    def __init__(self, base_urls: list[str], model: str, api_key: str | None = None, *, timeout_s: float = 60.0,
                 max_tokens: int = 512, temperature: float = 0.2, attempts: int = 3, backoff_s: float = 0.5,
                 cooldown_s: float = 10.0, input_cost_per_mtok: float = 0.0, output_cost_per_mtok: float = 0.0,
                 stop: list[str] | None = None) -> None:
        self.model = model
        self._pool = ReplicaPool(base_urls, cooldown_s) if base_urls else None
        self._cooldown = cooldown_s
        self._headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._timeout = timeout_s
        self._max_tokens = max_tokens
        self._temperature = temperature
        self._attempts = attempts
        self._backoff = backoff_s
        self._prices = (input_cost_per_mtok, output_cost_per_mtok)
        self._stop = stop or []
        self.health = ServerHealth()
        self._checked: set[str] = set()  # replicas whose /models was seen to list LLM_MODEL (or nothing)
        self._loop: asyncio.AbstractEventLoop | None = None

    # --- plumbing -----------------------------------------------------------------------------------

    @property
    def replicas(self) -> list[Replica]:
        return self._pool.replicas if self._pool else []

    async def _ready(self) -> ReplicaPool:
        """The replicas to call (a subclass may start its server here)."""
        if self._pool is None:
            raise LLMError("no LLM server configured (LLM_BASE_URL)")
        return self._pool

    def _label(self, replica: Replica) -> str:
        """A replica as errors name it: by its place in LLM_BASE_URL, not its address, since an error
        reaches the API's clients in `degraded_nodes` (`status()` lists the addresses for operators)."""
        replicas = self.replicas
        if len(replicas) <= 1:
            return "the LLM server"
        return f"LLM server {replicas.index(replica) + 1} of {len(replicas)}"

    def _bind(self) -> httpx.AsyncClient:
        """Connections belong to one event loop; a process that runs several (a CLI, the tests) gets
        fresh ones for each."""
        loop = asyncio.get_running_loop()
        if self._loop is not loop:
            self._loop = loop
            timeout = httpx.Timeout(self._timeout, connect=min(self._timeout, 5.0))
            self._client = httpx.AsyncClient(timeout=timeout, headers=self._headers)
        return self._client

    def _retrying(self) -> AsyncRetrying:
        return AsyncRetrying(retry=retry_if_exception_type(_Transient), stop=stop_after_attempt(self._attempts),
                             wait=wait_exponential(multiplier=self._backoff, max=8), reraise=True)

    def _payload(self, messages: list[dict[str, str]], max_tokens: int, stream: bool) -> dict[str, Any]:
        payload: dict[str, Any] = {"model": self.model, "messages": messages, "max_tokens": max_tokens,
                                   "temperature": self._temperature}
        if self._stop:
            payload["stop"] = self._stop
        if stream:
            payload.update(stream=True, stream_options={"include_usage": True})
        return payload

    def _usage(self, raw: Any, messages: list[dict[str, str]], text: str) -> Usage:
        if isinstance(raw, dict) and raw.get("prompt_tokens") is not None:
            prompt, output = int(raw.get("prompt_tokens") or 0), int(raw.get("completion_tokens") or 0)
        else:  # the server reports none: count what went in and what came out
            prompt = sum(estimated_tokens(m["content"]) for m in messages)
            output = estimated_tokens(text)
        return priced(prompt, output, *self._prices)

    def _check_model(self, replica: Replica, served: Any) -> None:
        if isinstance(served, str) and served and not same_model(served, self.model):
            raise LLMError(f"{self._label(replica)} serves {served!r}, not LLM_MODEL {self.model!r}")

    def _refused(self, replica: Replica, reply: httpx.Response) -> LLMError:
        """The error for a reply that is not 200: retryable statuses as `_Transient`."""
        message = _error_message(reply)
        status = reply.status_code
        if status in _RETRY_STATUSES:
            if status >= 500:
                self._pool.failed(replica)  # type: ignore[union-attr]
            return _Transient(f"{self._label(replica)} answered {status}: {message}")
        if status in (401, 403):
            return LLMError(f"{self._label(replica)} refused the API key ({status}; check LLM_API_KEY): {message}")
        if status == 404:
            return LLMError(f"{self._label(replica)} answered 404 for model {self.model!r} (check LLM_MODEL, and "
                            f"that LLM_BASE_URL ends where /chat/completions starts, e.g. /v1): {message}")
        return LLMError(f"{self._label(replica)} rejected the request ({status}): {message}")

    async def _send(self, payload: dict[str, Any], stream: bool) -> tuple[Replica, httpx.Response]:
        """One call with retries: the response, status 200, its body unread when streaming."""
        pool = await self._ready()
        client = self._bind()
        async for attempt in self._retrying():
            with attempt:
                replica = pool.pick()
                await self._first_use(replica)
                replica.in_flight += 1  # a stream stays in flight until its reader closes it
                try:
                    request = client.build_request("POST", f"{replica.url}/chat/completions", json=payload)
                    reply = await client.send(request, stream=stream)
                    if reply.status_code != 200:
                        if stream:
                            await reply.aread()
                            await reply.aclose()
                        raise self._refused(replica, reply)
                except httpx.TimeoutException as exc:
                    replica.in_flight -= 1
                    pool.failed(replica)
                    raise _Transient(f"{self._label(replica)} timed out after {self._timeout:g} s "
                                     f"({type(exc).__name__})") from None
                except httpx.TransportError as exc:
                    replica.in_flight -= 1
                    pool.failed(replica)
                    raise _Transient(f"{self._label(replica)} unreachable ({type(exc).__name__})") from None
                except BaseException:
                    replica.in_flight -= 1
                    raise
                if not stream:
                    replica.in_flight -= 1
                pool.succeeded(replica)
                return replica, reply
        raise AssertionError("unreachable")  # tenacity re-raises the last error

    async def _chat(self, messages: list[dict[str, str]], max_tokens: int, allow_empty: bool = False) -> Generation:
        start = time.perf_counter()
        try:
            replica, reply = await self._send(self._payload(messages, max_tokens, stream=False), stream=False)
            try:
                body = reply.json()
                self._check_model(replica, body.get("model"))
                text = body["choices"][0]["message"].get("content")
            except LLMError:
                raise
            except (ValueError, KeyError, IndexError, TypeError, AttributeError) as exc:
                raise LLMError(f"{self._label(replica)} sent a malformed reply: {exc!r}") from None
            if not isinstance(text, str) or not (text.strip() or allow_empty):
                raise LLMError(f"{self._label(replica)} returned no text")
        except LLMError as exc:
            self.health.failed(str(exc))
            raise
        self.health.succeeded(time.perf_counter() - start)
        text = text.strip()
        return Generation(text=text, provider=self.name, model=self.model,
                          usage=self._usage(body.get("usage"), messages, text))

    # --- the provider protocol ----------------------------------------------------------------------

    async def _compose_request(self, request: ComposeRequest) -> ComposeRequest:
        """The request as the model sees it (the local provider condenses its evidence)."""
        return request

    async def generate(self, request: ComposeRequest) -> Generation:
        return await self._chat(prompts.compose(await self._compose_request(request)).messages(), self._max_tokens)

    async def complete(self, prompt: str, max_tokens: int) -> Generation:
        """A raw prompt (the debate's agents and judge build their own)."""
        return await self._chat([{"role": "user", "content": prompt}], max_tokens)

    async def stream(self, request: ComposeRequest, usage: Usage) -> AsyncIterator[str]:
        messages = prompts.compose(await self._compose_request(request)).messages()
        start = time.perf_counter()
        try:
            replica, reply = await self._send(self._payload(messages, self._max_tokens, stream=True), stream=True)
        except LLMError as exc:
            self.health.failed(str(exc))
            raise
        pieces: list[str] = []
        raw_usage = None
        leading = True
        try:
            async for event in _events(reply, self._label(replica)):
                if event.get("error"):
                    raise LLMError(f"{self._label(replica)} failed mid-stream: {event['error']}")
                self._check_model(replica, event.get("model"))
                raw_usage = event.get("usage") or raw_usage
                for choice in event.get("choices") or []:
                    piece = (choice.get("delta") or {}).get("content") or ""
                    if leading:  # an answer starts at its first word
                        piece = piece.lstrip()
                    if piece:
                        leading = False
                        pieces.append(piece)
                        yield piece
        except LLMError as exc:
            self.health.failed(str(exc))
            raise
        except httpx.TimeoutException:
            error = f"{self._label(replica)} sent nothing for {self._timeout:g} s mid-stream"
            self.health.failed(error)
            raise LLMError(error) from None
        except httpx.TransportError as exc:
            error = f"{self._label(replica)} dropped the stream ({type(exc).__name__})"
            self.health.failed(error)
            raise LLMError(error) from None
        finally:
            replica.in_flight -= 1
            await reply.aclose()
        self.health.succeeded(time.perf_counter() - start)
        usage.assign(self._usage(raw_usage, messages, "".join(pieces)))

    async def judge(self, question: str, answer: str, evidence: tuple[Evidence, ...], usage: Usage) -> bool | None:
        prompt = prompts.judge(question, answer, evidence, detect_language(question))
        generation = await self._chat(prompt.messages(), _JUDGE_TOKENS, allow_empty=True)  # counted, then refused
        usage.assign(generation.usage)
        verdict = prompts.parse_verdict(generation.text)
        if verdict is None:
            raise LLMError(f"{self.name} judge replied {generation.text[:40]!r}, not YES or NO")
        return verdict

    # --- health -------------------------------------------------------------------------------------

    async def _check_replica(self, replica: Replica, timeout_s: float) -> str | None:
        """What is wrong with a replica by its `/models` (None: nothing seen). Unreachable ones cool down."""
        try:
            reply = await self._bind().get(f"{replica.url}/models", timeout=timeout_s)
        except httpx.HTTPError as exc:
            self._pool.failed(replica)  # type: ignore[union-attr]
            return f"{self._label(replica)} unreachable ({type(exc).__name__})"
        if reply.status_code in (401, 403):
            return f"{self._label(replica)} refused the API key ({reply.status_code}; check LLM_API_KEY)"
        if reply.status_code != 200:  # some servers list no models: being up is all it can say
            return None
        try:
            listed = [str(m.get("id")) for m in reply.json().get("data") or [] if isinstance(m, dict)]
        except (ValueError, AttributeError):
            listed = []
        self.health.served[replica.url] = listed
        if listed and not any(same_model(m, self.model) for m in listed):
            return f"{self._label(replica)} serves {', '.join(map(repr, listed))}, not LLM_MODEL {self.model!r}"
        return None

    async def _first_use(self, replica: Replica) -> None:
        """Before a replica's first call, its `/models`: a single-model server (llama.cpp) answers whatever
        model is asked for, and a wrong LLM_MODEL is better refused before a whole answer is generated."""
        if replica.url in self._checked:
            return
        problem = await self._check_replica(replica, min(self._timeout, 2.0))
        if problem is not None and "unreachable" not in problem:
            raise LLMError(problem)  # the call itself finds out about an unreachable server, with retries
        if problem is None:
            self._checked.add(replica.url)

    async def probe(self, timeout_s: float = 2.0) -> dict[str, Any]:
        """Ask every replica's `/models` whether it is up and serves LLM_MODEL; then `status()`."""
        try:
            pool = await self._ready()
        except LLMError as exc:
            self.health.state, self.health.last_error = "degraded", str(exc)
            return self.status()
        problems = [p for p in [await self._check_replica(r, timeout_s) for r in pool.replicas] if p]
        # The probe is the newest word on the servers: it clears an earlier call's failure too.
        self.health.state = "degraded" if problems else "ok"
        if problems:
            self.health.last_error = "; ".join(problems)
        return self.status()

    def status(self) -> dict[str, Any]:
        h = self.health
        return {"provider": self.name, "model": self.model, "urls": [r.url for r in self.replicas],
                "state": h.state, "latency_ms": h.latency_ms, "calls": h.calls, "errors": h.errors,
                "last_error": h.last_error, "served_models": h.served}

    async def aclose(self) -> None:
        if self._loop is asyncio.get_running_loop():
            await self._client.aclose()
            self._loop = None


async def _events(reply: httpx.Response, label: str) -> AsyncIterator[dict[str, Any]]:
    """The JSON payloads of a server-sent event stream, up to `[DONE]` (or the stream's end)."""
    async for line in reply.aiter_lines():
        if not line.startswith("data:"):
            continue  # blank separators, `event:` and `:` keep-alive comments
        data = line[5:].strip()
        if data == "[DONE]":
            return
        try:
            event = json.loads(data)
        except ValueError:
            raise LLMError(f"{label} sent a stream event that is not JSON: {data[:80]!r}") from None
        if isinstance(event, dict):
            yield event
