"""The `dtrag` CLI: ingest with a summary, bad files rejected with the file named and nothing written."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

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
    first = dtrag(["ingest", str(docs), "--taxonomy", "science"], sqlite_url)
    assert first.returncode == 0, first.stderr
    assert "docs/s" in first.stdout and "tokens/s" in first.stdout
    assert "ingesting" in first.stderr  # the progress bar
    row = [line for line in first.stdout.splitlines() if line.strip().startswith("│ 2")][0]
    assert row.split("│")[2].strip() == "2"  # created
    again = dtrag(["ingest", str(docs), "--taxonomy", "science"], sqlite_url)
    row = [line for line in again.stdout.splitlines() if line.strip().startswith("│ 2")][0]
    assert row.split("│")[4].strip() == "2"  # unchanged


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
    listing = dtrag(["ingest", str(good)], sqlite_url)
    assert listing.returncode == 0  # the earlier failure wrote nothing: good.txt is new now
    row = [line for line in listing.stdout.splitlines() if line.strip().startswith("│ 1")][0]
    assert row.split("│")[2].strip() == "1"


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
    done = dtrag(["ingest", str(docs), "--skip-invalid"], sqlite_url)
    assert done.returncode == 0, done.stderr
    assert "corpus.jsonl:2" in done.stdout and "broken.txt" in done.stdout  # each skipped one, named
    row = [line for line in done.stdout.splitlines() if line.strip().startswith("│ 2")][0]
    cells = [c.strip() for c in row.split("│")[1:-1]]
    assert cells[:5] == ["2", "2", "0", "0", "2"]  # documents, created, replaced, unchanged, skipped


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
