"""Reading BEIR-format datasets (corpus.jsonl, queries.jsonl, qrels/<split>.tsv) in place."""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass
from pathlib import Path

from apps.ingestion.documents import SourceDocument
from apps.ingestion.errors import IngestError
from apps.ingestion.loaders import load_file


@dataclass
class BeirDataset:
    name: str
    path: Path
    queries: dict[str, str]
    qrels: dict[str, dict[str, int]]
    split: str

    @property
    def corpus_path(self) -> Path:
        return self.path / "corpus.jsonl"

    def corpus(self, max_bytes: int = 1 << 31, skipped: list[IngestError] | None = None) -> list[SourceDocument]:
        """The corpus; with `skipped`, documents that cannot be ingested (BEIR sets hold a few empty
        ones) are listed there instead of failing the whole set."""
        return load_file(self.corpus_path, max_bytes, skipped)

    def answers(self) -> dict[str, list[str]]:
        """Gold answer strings per query id, when the set has `answers.jsonl` (korquad-ko does)."""
        path = self.path / "answers.jsonl"
        if not path.is_file():
            return {}
        rows = (json.loads(line) for line in path.read_text("utf-8").splitlines() if line.strip())
        return {row["_id"]: list(row["answers"]) for row in rows}


def available_splits(path: Path) -> list[str]:
    return sorted(p.stem for p in (path / "qrels").glob("*.tsv"))


def load_qrels(path: Path) -> dict[str, dict[str, int]]:
    qrels: dict[str, dict[str, int]] = {}
    with path.open(encoding="utf-8") as fh:
        reader = csv.reader(fh, delimiter="\t")
        next(reader, None)  # header
        for row in reader:
            if len(row) >= 3:
                qrels.setdefault(row[0], {})[row[1]] = int(row[2])
    return qrels


def load_dataset(path: str | Path, split: str = "test") -> BeirDataset:
    path = Path(path)
    if not (path / "corpus.jsonl").is_file():
        raise FileNotFoundError(f"{path}: no corpus.jsonl (expected a BEIR dataset folder)")
    qrels_path = path / "qrels" / f"{split}.tsv"
    if not qrels_path.is_file():
        raise FileNotFoundError(f"{qrels_path}: no such split; available: {', '.join(available_splits(path))}")
    qrels = load_qrels(qrels_path)
    queries = {}
    with (path / "queries.jsonl").open(encoding="utf-8") as fh:
        for line in fh:
            if line.strip():
                row = json.loads(line)
                if row["_id"] in qrels:
                    queries[row["_id"]] = row["text"]
    return BeirDataset(path.name, path, queries, qrels, split)
