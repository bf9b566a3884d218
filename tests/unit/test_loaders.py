"""File loaders and their errors: every error names the file."""

from __future__ import annotations

import json

import pytest

from apps.ingestion.errors import IngestError
from apps.ingestion.loaders import iter_paths, load_bytes, load_file

LIMIT = 1 << 20


def test_text_and_markdown(tmp_path) -> None:
    (tmp_path / "a.txt").write_text("Plain text body.", encoding="utf-8")
    (tmp_path / "b.md").write_text("# Guide Title\n\nSome *markdown* body.", encoding="utf-8")
    [txt] = load_file(tmp_path / "a.txt", LIMIT)
    [md] = load_file(tmp_path / "b.md", LIMIT)
    assert txt.title == "a" and txt.text == "Plain text body." and txt.content_type == "text/plain"
    assert md.title == "Guide Title" and md.content_type == "text/markdown"
    assert txt.external_id == str((tmp_path / "a.txt").resolve())
    assert txt.source_url.startswith("file://")


@pytest.mark.parametrize(
    ("markdown", "title", "text"),
    [
        ("# C# Guide ##  \n\nBody.", "C# Guide", "\n\nBody."),  # closing #s go, a #-ending word stays
        ("Intro.\n\n## Part\n\n  # Title \t\r\nBody.\r\n", "Title", "Intro.\n\nPart\n\n\nBody.\r\n"),
        ("#\n\nBody   \n\nmore", "b", "\n\nBody   \n\nmore"),  # an empty heading is no title
        ("#hashtag\n\n####### seven", "b", "#hashtag\n\n####### seven"),  # neither is a heading
    ],
)
def test_markdown_title_is_the_first_heading(markdown: str, title: str, text: str) -> None:
    [doc] = load_bytes("b.md", markdown.encode(), LIMIT)
    assert (doc.title, doc.text) == (title, text)


def test_html_drops_scripts_and_takes_title(tmp_path) -> None:
    html = "<html><head><title>Page T</title><style>p{}</style></head><body><p>Hello</p><script>evil()</script><p>World</p></body></html>"
    (tmp_path / "p.html").write_text(html, encoding="utf-8")
    [doc] = load_file(tmp_path / "p.html", LIMIT)
    assert doc.title == "Page T" and "Hello" in doc.text and "World" in doc.text and "evil" not in doc.text


def test_pdf(tmp_path) -> None:
    from reportlab.pdfgen import canvas

    path = tmp_path / "report.pdf"
    c = canvas.Canvas(str(path))
    c.drawString(72, 720, "Quarterly revenue grew by twelve percent.")
    c.showPage()
    c.drawString(72, 720, "Second page text.")
    c.save()
    [doc] = load_file(path, LIMIT)
    assert "Quarterly revenue grew" in doc.text and "Second page" in doc.text
    assert doc.content_type == "application/pdf"


def test_beir_jsonl(tmp_path) -> None:
    lines = [{"_id": "d1", "title": "T1", "text": "first"}, {"_id": "d2", "title": "", "text": "second"}]
    (tmp_path / "corpus.jsonl").write_text("\n".join(json.dumps(r) for r in lines) + "\n", encoding="utf-8")
    docs = load_file(tmp_path / "corpus.jsonl", LIMIT)
    assert [(d.external_id, d.title, d.text) for d in docs] == [("d1", "T1", "first"), ("d2", "", "second")]


@pytest.mark.parametrize(
    ("name", "data", "message"),
    [
        ("notes.docx", b"PK\x03\x04", "unsupported file type .docx"),
        ("empty.txt", b"  \n\t ", "contains no text"),
        ("latin1.txt", "caf\xe9".encode("latin-1"), "not valid UTF-8"),
        ("broken.pdf", b"%PDF-1.4 garbage", "not a readable PDF"),
        ("bad.jsonl", b'{"_id": "1", "text": "ok"}\n{not json\n', "bad.jsonl:2: invalid JSON"),
        ("shape.jsonl", b'{"id": 1}\n', 'expected a BEIR corpus line'),
        ("empty.html", b"<html><body><script>x()</script></body></html>", "contains no text"),
    ],
)
def test_bad_files_name_the_file(name: str, data: bytes, message: str) -> None:
    with pytest.raises(IngestError) as info:
        load_bytes(name, data, LIMIT)
    assert name in str(info.value) and message in str(info.value)


def test_oversize_and_unreadable(tmp_path) -> None:
    big = tmp_path / "big.txt"
    big.write_text("x" * 5000)
    with pytest.raises(IngestError, match=r"big.txt: file is 5,000 bytes, over the 1,024-byte limit"):
        load_file(big, 1024)
    with pytest.raises(IngestError, match=r"missing.txt: cannot read file"):
        load_file(tmp_path / "missing.txt", LIMIT)


def test_iter_paths_walks_folders(tmp_path) -> None:
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "a.md").write_text("# a")
    (tmp_path / "b.txt").write_text("b")
    (tmp_path / "c.bin").write_bytes(b"\x00")
    assert [p.name for p in iter_paths([tmp_path])] == ["b.txt", "a.md"]
