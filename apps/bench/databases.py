"""Which database a bench runs on, and its settings: a cached SQLite file per dataset (its corpus is
ingested once and reused by every later run) or a scratch file no other run sees."""

from __future__ import annotations

import hashlib
import os
import tempfile
from pathlib import Path
from typing import Any

from apps.bench.beir import BeirDataset
from apps.core.config import Settings

CACHE_DIR = Path(os.environ.get("DTRAG_CACHE_DIR", Path.home() / ".cache" / "dtrag"))


def sqlite_url(path: Path) -> str:
    return f"sqlite+aiosqlite:///{path}"


def default_database_url(dataset: BeirDataset) -> str:
    """The dataset's cached database: one file per dataset folder."""
    digest = hashlib.sha256(str(dataset.path.resolve()).encode()).hexdigest()[:8]
    path = CACHE_DIR / "bench" / f"{dataset.name}-{digest}.sqlite"
    path.parent.mkdir(parents=True, exist_ok=True)
    return sqlite_url(path)


def scratch_database_url(name: str, folder: Path | None = None) -> str:
    """A new SQLite file `name`.sqlite: in `folder` (the caller's temporary directory, removed with it),
    else in a fresh temporary folder that outlives the run, so its database can be looked at afterwards.
    What a bench writes there (planted copies, soak traffic) never reaches the cached databases."""
    folder = folder or Path(tempfile.mkdtemp(prefix=f"dtrag-{name}-"))
    return sqlite_url(folder / f"{name}.sqlite")


def bench_settings(base: Settings, database_url: str, **changes: Any) -> Settings:
    """`base` on `database_url`, with the persistent passage-vector cache and no query-vector cache:
    each strategy's latency must include embedding its queries."""
    cache = base.embedding_cache_path or str(CACHE_DIR / "embeddings.sqlite")
    return base.model_copy(update={"database_url": database_url, "embedding_cache_path": cache,
                                   "query_embedding_cache_size": 0, **changes})
