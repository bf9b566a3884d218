"""A small bilingual sample corpus (English and Korean) that `make run` ingests on first start.

Files live under `<language>/<taxonomy...>/<name>.md`; the folders below the language become the
document's taxonomy path.
"""

from __future__ import annotations

from pathlib import Path

from apps.ingestion.documents import SourceDocument
from apps.ingestion.loaders import load_file

ROOT = Path(__file__).parent


def sample_documents(max_bytes: int = 1 << 20) -> list[SourceDocument]:
    documents = []
    for path in sorted(ROOT.rglob("*.md")):
        relative = path.relative_to(ROOT)
        [doc] = load_file(path, max_bytes)
        doc.external_id = f"sample:{relative.as_posix()}"
        doc.source_url = None
        doc.taxonomy_path = "/".join(relative.parts[1:-1])
        doc.metadata = {"sample": True, "language": relative.parts[0]}
        documents.append(doc)
    return documents
