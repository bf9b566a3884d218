"""The `dtrag` CLI: ingest with a summary, bad files rejected with the file named and nothing written."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from tests.support.redis_server import free_port

ROOT = Path(__file__).resolve().parents[2]


def dtrag(args: list[str], database_url: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "DATABASE_URL": database_url, "COLUMNS": "200"}
    return subprocess.run([sys.executable, "-m", "apps.cli.main", *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=300)


@pytest.fixture
def sqlite_url(tmp_path) -> str:
    url = f"sqlite+aiosqlite:///{tmp_path / 'cli.db'}"
    assert dtrag(["db", "upgrade"], url).returncode == 0
    return url


def test_ingest_prints_a_summary_and_is_idempotent(tmp_path, sqlite_url) -> None:
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "a.md").write_text("# Alpha\n\nAlpha particles are helium nuclei.")
    (docs / "b.txt").write_text("세종대왕은 훈민정음을 창제하였다.")
    first = dtrag(["ingest", str(docs), "--taxonomy", "science", "--json"], sqlite_url)
    assert first.returncode == 0, first.stderr
    assert "ingesting" in first.stderr  # the progress bar, on stderr: stdout is the summary alone
    summary = json.loads(first.stdout)
    assert (summary["documents"], summary["created"], summary["unchanged"]) == (2, 2, 0)
    assert summary["chunks"] >= 2 and summary["tokens_per_s"] > 0
    again = dtrag(["ingest", str(docs), "--taxonomy", "science"], sqlite_url)  # the table, for people
    assert again.returncode == 0, again.stderr
    assert "docs/s" in again.stdout and "tokens/s" in again.stdout and "unchanged" in again.stdout
    third = json.loads(dtrag(["ingest", str(docs), "--taxonomy", "science", "--json"], sqlite_url).stdout)
    assert (third["created"], third["replaced"], third["unchanged"]) == (0, 0, 2)


def test_bad_file_names_the_file_and_writes_nothing(tmp_path, sqlite_url) -> None:
    good = tmp_path / "good.txt"
    good.write_text("Fine text.")
    bad = tmp_path / "bad.txt"
    bad.write_bytes(b"\xff\xfe\x00 not utf8 \xc3")
    result = dtrag(["ingest", str(good), str(bad)], sqlite_url)
    assert result.returncode == 1
    assert "bad.txt" in result.stderr and "nothing was ingested" in result.stderr
    unknown = dtrag(["ingest", str(tmp_path / "missing.pdf")], sqlite_url)
    assert unknown.returncode == 1 and "missing.pdf" in unknown.stderr
    listing = dtrag(["ingest", str(good), "--json"], sqlite_url)
    assert listing.returncode == 0  # the earlier failure wrote nothing: good.txt is new now
    assert json.loads(listing.stdout)["created"] == 1


def test_invalid_setting_is_a_clear_startup_error(tmp_path) -> None:
    result = dtrag(["keys", "list"], "mysql://nope")
    assert result.returncode == 1 and "DATABASE_URL" in result.stderr and "Traceback" not in result.stderr


def test_skip_invalid_leaves_out_bad_files_and_corpus_lines(tmp_path, sqlite_url) -> None:
    """A BEIR corpus may hold empty documents (SciFact has two): one must not reject the rest."""
    docs = tmp_path / "corpus"
    docs.mkdir()
    (docs / "corpus.jsonl").write_text(
        '{"_id": "d1", "title": "Alpha", "text": "Alpha particles are helium nuclei."}\n'
        '{"_id": "d2", "title": "", "text": "   "}\n'
        '{"_id": "d3", "title": "Beta", "text": "Beta decay emits an electron."}\n')
    (docs / "broken.txt").write_bytes(b"\xff\xfe not utf8 \xc3")
    refused = dtrag(["ingest", str(docs)], sqlite_url)
    assert refused.returncode == 1 and "--skip-invalid" in refused.stderr
    done = dtrag(["ingest", str(docs), "--skip-invalid", "--json"], sqlite_url)
    assert done.returncode == 0, done.stderr
    summary = json.loads(done.stdout)
    assert [summary[k] for k in ("documents", "created", "replaced", "unchanged", "skipped")] == [2, 2, 0, 0, 2]
    skipped = " ".join(summary["skipped_items"])
    assert "corpus.jsonl:2" in skipped and "broken.txt" in skipped  # each skipped one, named


def test_keys_as_json_never_show_a_secret_again(sqlite_url) -> None:
    created = dtrag(["keys", "create", "--scope", "read", "--name", "ci", "--json"], sqlite_url)
    assert created.returncode == 0, created.stderr
    key = json.loads(created.stdout)
    listed = dtrag(["keys", "list", "--json"], sqlite_url)
    assert listed.returncode == 0, listed.stderr
    rows = json.loads(listed.stdout)
    assert [(r["id"], r["name"], r["scope"], r["active"]) for r in rows] == [(key["id"], "ci", "read", True)]
    assert key["api_key"] not in listed.stdout
    assert dtrag(["keys", "revoke", key["id"]], sqlite_url).returncode == 0
    assert json.loads(dtrag(["keys", "list", "--json"], sqlite_url).stdout)[0]["active"] is False
    missing = dtrag(["keys", "revoke", "nope"], sqlite_url)
    assert missing.returncode == 1 and "no API key with id 'nope'" in missing.stderr


def test_unmigrated_database_names_the_fix(tmp_path) -> None:
    result = dtrag(["keys", "list"], f"sqlite+aiosqlite:///{tmp_path / 'empty.db'}")
    assert result.returncode == 1 and "dtrag db upgrade" in result.stderr and "Traceback" not in result.stderr


def test_serve_init_prints_a_curl_for_its_own_port(tmp_path) -> None:
    """The first-run curl names the port the server listens on, and works as printed."""
    port = free_port()
    env = {**os.environ, "DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path / 'init.db'}", "COLUMNS": "200",
           "LOG_LEVEL": "WARNING"}
    out = tmp_path / "serve.out"
    with out.open("w") as sink:
        server = subprocess.Popen([sys.executable, "-m", "apps.cli.main", "serve", "--init", "--port", str(port)],
                                  cwd=ROOT, env=env, stdout=sink, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/health", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert server.poll() is None and time.monotonic() < deadline, out.read_text()
            time.sleep(0.3)
        printed = out.read_text()
        curl = re.search(r"curl -X POST (\S+) .*-H \"X-API-Key: (\S+)\"", printed)
        assert curl, printed
        url, api_key = curl.groups()
        assert url == f"http://localhost:{port}/api/v1/search/"
        found = httpx.post(url.replace("localhost", "127.0.0.1"), headers={"X-API-Key": api_key},
                           json={"q": "machine learning", "final_topk": 5}, timeout=30, follow_redirects=True)
        assert found.status_code == 200 and found.json()["hits"], found.text
    finally:
        server.terminate()
        server.wait(timeout=30)


async def test_benches_skip_and_count_empty_documents(tmp_path, runtime) -> None:
    from apps.bench.beir import load_dataset
    from apps.bench.retrieval import ingest_dataset

    (tmp_path / "qrels").mkdir()
    (tmp_path / "qrels" / "test.tsv").write_text("query-id\tcorpus-id\tscore\nq1\td1\t1\n")
    (tmp_path / "queries.jsonl").write_text('{"_id": "q1", "text": "alpha particles"}\n')
    (tmp_path / "corpus.jsonl").write_text(
        '{"_id": "d1", "title": "Alpha", "text": "Alpha particles are helium nuclei."}\n'
        '{"_id": "d2", "title": "", "text": ""}\n')
    report = await ingest_dataset(runtime, load_dataset(tmp_path))
    assert report["docs"] == 1 and report["skipped"] == 1
