"""The hostile share of `dtrag bench soak --hostile`: requests built to be slow, big or refused, each as a
coroutine that sends one and returns the status it got (or the client-side error's name).

Every case is bounded on the client's side too: the bodies that must be refused mid-stream (a trickle, a
flood past the size limit) go over a raw loopback socket, since an HTTP client sends a whole body
before it reads the answer, and stop as soon as a status line arrives or their deadline passes.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass

import httpx

from apps.core.config import Settings

YES_NO = "Is it true that the quick brown fox jumps over the lazy dog while the cat sleeps and "


@dataclass(frozen=True)
class Target:
    """Where and as whom the hostile client sends: its own keys, so its job quota is not the benign load's."""

    base: str
    read_key: str
    write_key: str
    settings: Settings


# A case's outcome: the status (or the client-side error's name) and, for a 5xx, the problem's detail.
Outcome = tuple[str, str | None]
Case = Callable[[httpx.AsyncClient, Target, int], Awaitable[Outcome]]


def yes_no_question(chars: int) -> str:
    return (YES_NO * (chars // len(YES_NO) + 1))[: chars - 1] + "?"


def korean_query(n: int, chars: int = 10_000) -> str:
    """A query of `chars` characters of Hangul words, different for every `n` (a seeded generator, so the
    same run sends the same ones)."""
    rng = random.Random(n)
    words: list[str] = []
    size = 0
    while size < chars:
        word = "".join(chr(0xAC00 + rng.randrange(11172)) for _ in range(rng.randint(2, 4)))
        words.append(word)
        size += len(word) + 1
    return " ".join(words)[:chars].rstrip() or "가"


async def _status(request: Awaitable[httpx.Response]) -> Outcome:
    try:
        response = await request
    except httpx.HTTPError as exc:
        return type(exc).__name__, None
    if response.status_code < 500:
        return str(response.status_code), None
    try:
        detail = str(response.json().get("detail"))[:300]
    except ValueError:
        detail = response.text[:300]
    return str(response.status_code), detail


# --- the cases ---------------------------------------------------------------------------------------------

async def json_150k_spaces(client: httpx.AsyncClient, t: Target, i: int) -> Outcome:
    text = "A sentence that goes on" + " " * 150_000 + f"and ends here {i}."
    return await _status(client.post("/api/v1/documents", headers={"X-API-Key": t.write_key},
                                     json={"title": "spaces", "external_id": f"hostile-spaces-{i}", "text": text}))


async def markdown_heading_spaces(client: httpx.AsyncClient, t: Target, i: int) -> Outcome:
    data = ("# a" + " " * 2_000 + f"\n\nA paragraph under a heading of spaces ({i}).\n").encode()
    return await _status(client.post("/api/v1/documents", headers={"X-API-Key": t.write_key},
                                     files={"file": (f"heading-{i}.md", data, "text/markdown")}))


async def filename_40k(client: httpx.AsyncClient, t: Target, i: int) -> Outcome:
    name = ("a1" * 20_000)[:39_997] + ".md"
    return await _status(client.post("/api/v1/documents", headers={"X-API-Key": t.write_key},
                                     files={"file": (name, f"# Note {i}\n\nA note.\n".encode(), "text/markdown")}))


async def title_1mb(client: httpx.AsyncClient, t: Target, i: int) -> Outcome:
    return await _status(client.post("/api/v1/documents", headers={"X-API-Key": t.write_key},
                                     data={"title": "t" * 1_000_000},
                                     files={"file": (f"note-{i}.md", b"# Note\n\nA note.\n", "text/markdown")}))


async def yes_no_10k_search(client: httpx.AsyncClient, t: Target, i: int) -> Outcome:
    return await _status(client.post("/api/v1/search", headers={"X-API-Key": t.read_key},
                                     json={"q": yes_no_question(10_000)}))


async def yes_no_4k_answer(client: httpx.AsyncClient, t: Target, i: int) -> Outcome:
    """The longest question /answer takes (4,000 characters)."""
    return await _status(client.post("/answer", headers={"X-API-Key": t.read_key},
                                     json={"q": yes_no_question(4_000)}))


async def korean_10k_distinct(client: httpx.AsyncClient, t: Target, i: int) -> Outcome:
    return await _status(client.post("/api/v1/search", headers={"X-API-Key": t.read_key},
                                     json={"q": korean_query(i)}))


async def filter_keys_1000(client: httpx.AsyncClient, t: Target, i: int) -> Outcome:
    filters = {"metadata": {f"k{j}": f"v{i}" for j in range(1_000)}}
    return await _status(client.post("/api/v1/search", headers={"X-API-Key": t.read_key},
                                     json={"q": "vitamin D", "filters": filters}))


async def nested_json_10k(client: httpx.AsyncClient, t: Target, i: int) -> Outcome:
    """10,000 levels of arrays, to each JSON route in turn (search, answer, documents)."""
    path, key = (("/api/v1/search", t.read_key), ("/answer", t.read_key), ("/api/v1/documents", t.write_key))[i % 3]
    body = '{"q": ' + "[" * 10_000 + "]" * 10_000 + "}"
    return await _status(client.post(path, headers={"X-API-Key": key, "Content-Type": "application/json"},
                                     content=body))


async def no_key(client: httpx.AsyncClient, t: Target, i: int) -> Outcome:
    return await _status(client.post("/api/v1/search", json={"q": "vitamin D"}, headers={"X-User-Id": "mallory"}))


async def bad_key(client: httpx.AsyncClient, t: Target, i: int) -> Outcome:
    return await _status(client.post("/api/v1/search", json={"q": "vitamin D"},
                                     headers={"X-API-Key": f"dtr_bad{i:05d}_{'x' * 43}", "X-User-Id": "mallory"}))


async def javascript_source_url(client: httpx.AsyncClient, t: Target, i: int) -> Outcome:
    return await _status(client.post("/api/v1/documents", headers={"X-API-Key": t.write_key},
                                     json={"text": "A note.", "external_id": f"hostile-js-{i}",
                                           "source_url": "javascript:alert(document.cookie)"}))


async def _raw_post(base: str, path: str, headers: dict[str, str], body: AsyncIterator[bytes],
                    timeout_s: float) -> Outcome:
    """POST over a raw loopback socket, feeding `body` until the server's status line arrives."""
    url = httpx.URL(base)
    try:
        reader, writer = await asyncio.open_connection(url.host, url.port)
    except OSError as exc:
        return type(exc).__name__, None
    head = "".join([f"POST {path} HTTP/1.1\r\nHost: {url.host}:{url.port}\r\n",
                    *(f"{k}: {v}\r\n" for k, v in headers.items()), "Connection: close\r\n\r\n"])

    async def feed() -> None:
        with contextlib.suppress(ConnectionError):  # the server answered and closed: what we wait for
            writer.write(head.encode())
            async for chunk in body:
                writer.write(chunk)
                await writer.drain()

    feeder = asyncio.create_task(feed())
    try:
        line = await asyncio.wait_for(reader.readline(), timeout_s)
    except TimeoutError:
        return "ClientTimeout", None
    except ConnectionError as exc:
        return type(exc).__name__, None
    finally:
        feeder.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await feeder
        writer.close()
        with contextlib.suppress(ConnectionError):
            await writer.wait_closed()
    parts = line.split()
    return (parts[1].decode() if len(parts) > 1 else "closed"), None  # the body is not read: no detail


async def trickle(client: httpx.AsyncClient, t: Target, i: int) -> Outcome:
    """A body promised as 1,000 bytes and sent a byte every 0.5 s: refused at BODY_READ_TIMEOUT_S."""
    deadline = t.settings.body_read_timeout_s + 15

    async def body() -> AsyncIterator[bytes]:
        start = time.monotonic()
        while time.monotonic() - start < deadline:
            yield b" "
            await asyncio.sleep(0.5)

    headers = {"X-API-Key": t.read_key, "Content-Type": "application/json", "Content-Length": "1000"}
    return await _raw_post(t.base, "/api/v1/search", headers, body(), deadline)


async def over_size_limit(client: httpx.AsyncClient, t: Target, i: int) -> Outcome:
    """A chunked body (no Content-Length to refuse it by) that runs past MAX_REQUEST_BYTES."""
    limit = t.settings.max_request_bytes
    piece = b"x" * 65_536
    chunk = f"{len(piece):x}\r\n".encode() + piece + b"\r\n"

    async def body() -> AsyncIterator[bytes]:
        for _ in range(limit // len(piece) + 16):
            yield chunk
        yield b"0\r\n\r\n"  # only reached if the server let the whole body in

    headers = {"X-API-Key": t.write_key, "Content-Type": "application/json", "Transfer-Encoding": "chunked"}
    return await _raw_post(t.base, "/api/v1/documents", headers, body(), 60)


# Round-robin over this tuple: every case comes up once the hostile share has sent as many requests;
# distinct Korean queries come up three times as often (their effect is memory, which takes many).
CASES: tuple[tuple[str, Case], ...] = (
    ("json_150k_spaces", json_150k_spaces), ("korean_10k_distinct", korean_10k_distinct),
    ("markdown_heading_2k_spaces", markdown_heading_spaces), ("filename_40k_chars", filename_40k),
    ("korean_10k_distinct", korean_10k_distinct), ("yes_no_10k_search", yes_no_10k_search),
    ("yes_no_4k_answer", yes_no_4k_answer), ("multipart_title_1mb", title_1mb),
    ("korean_10k_distinct", korean_10k_distinct), ("filter_keys_1000", filter_keys_1000),
    ("nested_json_10k_levels", nested_json_10k), ("trickled_body", trickle), ("over_size_limit", over_size_limit),
    ("no_key", no_key), ("bad_key", bad_key), ("javascript_source_url", javascript_source_url),
)
