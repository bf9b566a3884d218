"""The upload parser's worker processes (issue 21 item 4): a parse past PARSE_TIMEOUT_S is killed, a
worker that dies fails only its own file, and the uploads after either go on working; directly and
through the HTTP API's upload jobs (both backends)."""

from __future__ import annotations

import asyncio
import os
import signal
import time

import pytest

from apps.ingestion.errors import IngestError
from apps.ingestion.parsing import DocumentParser
from tests.support.api import api_client
from tests.support.parsers import misbehaving


async def test_a_parse_past_the_deadline_is_killed_and_the_next_one_works() -> None:
    parser = DocumentParser(timeout_s=1.5, parse=misbehaving)
    try:
        await parser.parse("warm.txt", b"the worker is up", 1000)  # spawn time is not the parse's
        slow_pid = int((await parser.parse("pid.txt", b"", 1000))[0].text)
        start = time.perf_counter()
        with pytest.raises(IngestError, match=r"slow\.txt: parsing took longer than 1\.5 s"):
            await parser.parse("slow.txt", b"never parsed", 1000)
        assert time.perf_counter() - start < 10  # not the 600 s the parse would take
        docs = await parser.parse("after.txt", b"parsed by a fresh worker", 1000)
        assert docs[0].text == "parsed by a fresh worker"
        fresh_pid = int((await parser.parse("pid.txt", b"", 1000))[0].text)
        assert fresh_pid != slow_pid
        with pytest.raises(ProcessLookupError):
            os.kill(slow_pid, 0)  # the slow parse's worker is gone, not left running
    finally:
        parser.close()


@pytest.mark.parametrize("stem", ["exit", "killed"])
async def test_a_worker_dying_mid_parse_fails_only_its_file(stem: str) -> None:
    parser = DocumentParser(timeout_s=30, parse=misbehaving)
    try:
        with pytest.raises(IngestError, match=rf"{stem}\.txt: the parser process died while reading this file"):
            await parser.parse(f"{stem}.txt", b"x", 1000)
        for i in range(3):
            docs = await parser.parse(f"next-{i}.txt", f"upload {i} after the crash".encode(), 1000)
            assert docs[0].text == f"upload {i} after the crash"
    finally:
        parser.close()


async def test_a_worker_killed_while_idle_is_replaced() -> None:
    parser = DocumentParser(timeout_s=30, parse=misbehaving)
    try:
        pid = int((await parser.parse("pid.txt", b"", 1000))[0].text)
        os.kill(pid, signal.SIGKILL)
        await asyncio.sleep(0.5)  # the pool notices (pebble then calls the whole pool broken)
        assert int((await parser.parse("pid.txt", b"", 1000))[0].text) != pid
        assert (await parser.parse("ok.md", b"# Title\n\nBody text.", 1000))[0].title == "Title"
    finally:
        parser.close()


async def test_upload_jobs_fail_alone_and_the_next_upload_works(settings) -> None:
    async with api_client(settings.model_copy(update={"parse_timeout_s": 2.0})) as api:
        api.runtime.parser.parse_function = misbehaving
        c, h = api.client, api.headers("write")

        async def upload(name: str, text: str):
            return await c.post("/api/v1/documents?wait=true", headers=h,
                                files={"file": (name, text.encode(), "text/plain")})

        ok = await upload("first.txt", "Kimchi is fermented cabbage.")
        assert ok.status_code == 201, ok.text
        for bad, message in (("slow.txt", "parsing took longer than 2 s"),
                             ("exit.txt", "the parser process died"), ("killed.txt", "the parser process died")):
            start = time.perf_counter()
            r = await upload(bad, "never parsed")
            assert r.status_code == 422, r.text
            assert bad in r.json()["detail"] and message in r.json()["detail"]
            assert time.perf_counter() - start < 30
            after = await upload(f"after-{bad}", f"Green tea after {bad} is unoxidised.")
            assert after.status_code == 201, after.text
        listed = (await c.get("/api/v1/documents", headers=api.headers("read"))).json()
        assert listed["total"] == 4
