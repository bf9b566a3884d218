"""File loaders: `.txt`, `.md`, `.html`, `.pdf` and BEIR `corpus.jsonl`."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from apps.ingestion.documents import SourceDocument, normalise_taxonomy
from apps.ingestion.errors import IngestError

SUPPORTED_SUFFIXES = (".txt", ".md", ".markdown", ".html", ".htm", ".pdf", ".jsonl")
# Within one line ([ \t], not \s, which crossed line breaks) and with no lazy repeat before `\s*#*\s*$`
# (cubic on trailing spaces); the closing #s come off in `_heading_title`.
_MD_HEADING = re.compile(r"^[ \t]{0,3}#[ \t]+(.+)$", re.MULTILINE)
_MD_HEADING_MARKS = re.compile(r"^[ \t]{0,3}#{1,6}(?:[ \t\r]+|$)", re.MULTILINE)  # `#` alone is an empty heading


def _read_text(path: Path, data: bytes) -> str:
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise IngestError(str(path), f"not valid UTF-8 text (byte {exc.start})") from None


def _heading_title(line: str) -> str:
    """An ATX heading's text without its optional closing sequence: `Title ##` → `Title`; `C#` stays."""
    title = line.strip()
    unclosed = title.rstrip("#")
    if unclosed != title and (not unclosed or unclosed[-1] in " \t"):
        title = unclosed.rstrip()
    return title


def _require_text(path: Path, text: str) -> str:
    if not text.strip():
        raise IngestError(str(path), "contains no text")
    return text


def load_bytes(
    name: str,
    data: bytes,
    max_bytes: int,
    *,
    title: str | None = None,
    external_id: str | None = None,
    source_url: str | None = None,
    taxonomy_path: str | list[str] | None = None,
    metadata: dict[str, Any] | None = None,
    skipped: list[IngestError] | None = None,
    collection: str | None = None,
    access_groups: list[str] | tuple[str, ...] | None = None,
) -> list[SourceDocument]:
    """Parse one file's bytes by its name's suffix (also used for API uploads). With `skipped`, a
    corpus file's invalid lines are listed there and left out instead of failing the whole file.
    `collection` and `access_groups` go to every document the file holds."""
    documents = _parsed(name, data, max_bytes, title, external_id, source_url, taxonomy_path, metadata, skipped)
    for doc in documents:
        if collection:
            doc.collection = collection
        if access_groups:
            doc.access_groups = tuple(access_groups)
    return documents


def _parsed(name: str, data: bytes, max_bytes: int, title: str | None, external_id: str | None,
            source_url: str | None, taxonomy_path: str | list[str] | None, metadata: dict[str, Any] | None,
            skipped: list[IngestError] | None) -> list[SourceDocument]:
    path = Path(name)
    suffix = path.suffix.lower()
    if suffix not in SUPPORTED_SUFFIXES:
        raise IngestError(name, f"unsupported file type {suffix or '(none)'}; supported: {', '.join(SUPPORTED_SUFFIXES)}")
    if len(data) > max_bytes:
        raise IngestError(name, f"file is {len(data):,} bytes, over the {max_bytes:,}-byte limit")
    taxonomy = normalise_taxonomy(taxonomy_path)
    metadata = dict(metadata or {})
    if suffix == ".jsonl":
        return list(_beir_lines(path, _read_text(path, data), taxonomy, metadata, skipped))
    if suffix == ".pdf":
        text, found_title, content_type = _pdf(path, data), path.stem, "application/pdf"
    elif suffix in (".html", ".htm"):
        text, found_title = _html(path, _read_text(path, data))
        content_type = "text/html"
    else:
        text = _read_text(path, data)
        heading = _MD_HEADING.search(text) if suffix in (".md", ".markdown") else None
        found_title = (_heading_title(heading.group(1)) if heading else "") or path.stem
        if heading:  # the title travels with every chunk already
            text = text[: heading.start()] + text[heading.end() :]
        if suffix in (".md", ".markdown"):
            text = _MD_HEADING_MARKS.sub("", text)
        content_type = "text/markdown" if suffix in (".md", ".markdown") else "text/plain"
    return [
        SourceDocument(
            text=_require_text(path, text),
            title=title or found_title,
            external_id=external_id,
            source_url=source_url,
            content_type=content_type,
            taxonomy_path=taxonomy,
            metadata=metadata,
            origin=name,
        )
    ]


def load_file(path: str | Path, max_bytes: int, skipped: list[IngestError] | None = None) -> list[SourceDocument]:
    path = Path(path)
    try:
        size = path.stat().st_size
        if size > max_bytes:
            raise IngestError(str(path), f"file is {size:,} bytes, over the {max_bytes:,}-byte limit")
        data = path.read_bytes()
    except OSError as exc:
        raise IngestError(str(path), f"cannot read file: {exc.strerror or exc}") from None
    return load_bytes(str(path), data, max_bytes, external_id=str(path.resolve()), source_url=path.resolve().as_uri(),
                      skipped=skipped)


def iter_paths(paths: list[str | Path]) -> Iterator[Path]:
    """Files named directly, and supported files found under named directories."""
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            yield from sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in SUPPORTED_SUFFIXES)
        else:
            yield path


def _html(path: Path, html: str) -> tuple[str, str]:
    from selectolax.lexbor import LexborHTMLParser

    tree = LexborHTMLParser(html)
    for node in tree.css("script, style, noscript, template"):
        node.decompose()
    title_node = tree.css_first("title")
    body = tree.body or tree.root
    text = body.text(separator="\n") if body is not None else ""
    text = re.sub(r"\n\s*\n+", "\n\n", text).strip()
    return text, (title_node.text(strip=True) if title_node else "") or path.stem


def _pdf(path: Path, data: bytes) -> str:
    import io

    from pypdf import PdfReader
    from pypdf.errors import PdfReadError

    try:
        reader = PdfReader(io.BytesIO(data))
        if reader.is_encrypted:
            raise IngestError(str(path), "PDF is encrypted")
        return "\n\n".join((page.extract_text() or "") for page in reader.pages)
    except IngestError:
        raise
    except (PdfReadError, ValueError, KeyError, TypeError) as exc:
        raise IngestError(str(path), f"not a readable PDF ({exc})") from None


def _beir_row(where: str, line: str) -> dict[str, Any]:
    try:
        row = json.loads(line)
    except json.JSONDecodeError as exc:
        raise IngestError(where, f"invalid JSON ({exc.msg})") from None
    if not isinstance(row, dict) or "_id" not in row or "text" not in row:
        raise IngestError(where, 'expected a BEIR corpus line {"_id", "title", "text"}')
    if not str(row["text"]).strip() and not str(row.get("title", "")).strip():
        raise IngestError(where, "document has no text")
    return row


def _beir_lines(path: Path, content: str, taxonomy: str, metadata: dict[str, Any],
                skipped: list[IngestError] | None) -> Iterator[SourceDocument]:
    for lineno, line in enumerate(content.splitlines(), start=1):
        if not line.strip():
            continue
        where = f"{path}:{lineno}"
        try:
            row = _beir_row(where, line)
        except IngestError as exc:
            if skipped is None:
                raise
            skipped.append(exc)
            continue
        text = str(row["text"])
        yield SourceDocument(
            text=text if text.strip() else str(row.get("title", "")),
            title=str(row.get("title") or ""),
            external_id=str(row["_id"]),
            content_type="text/plain",
            taxonomy_path=taxonomy,
            metadata={**metadata, **(row.get("metadata") or {})},
            origin=where,
        )
