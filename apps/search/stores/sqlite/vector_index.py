"""sqlite-vec `vec0` tables that mirror `embeddings`, one per dimension, kept in sync by triggers.

A `vec0` table keeps vectors in contiguous chunks and scans them in C, so a k-nearest-neighbour query
over the whole corpus reads blocks instead of one row per vector. The triggers write it in the same
transaction as `embeddings` (and FK cascades fire them too), so it cannot drift from the table it
mirrors; `model` is a partition key, so a query scans only its own model's vectors.
"""

from __future__ import annotations


def table_name(dim: int) -> str:
    return f"vec_embeddings_{int(dim)}"


def ddl(dim: int) -> list[str]:
    """Idempotent statements creating the table and triggers for `dim` and filling it from `embeddings`."""
    t, d = table_name(dim), int(dim)
    copy = f"INSERT INTO {t}(chunk_id, model, embedding) SELECT {{row}}.chunk_id, {{row}}.model, {{row}}.vector"
    return [
        f"CREATE VIRTUAL TABLE IF NOT EXISTS {t} USING vec0("
        f"chunk_id integer primary key, model text partition key, embedding float[{d}] distance_metric=cosine)",
        f"CREATE TRIGGER IF NOT EXISTS {t}_ai AFTER INSERT ON embeddings WHEN new.dim = {d} BEGIN "
        + copy.format(row="new") + "; END",
        f"CREATE TRIGGER IF NOT EXISTS {t}_ad AFTER DELETE ON embeddings WHEN old.dim = {d} BEGIN "
        f"DELETE FROM {t} WHERE chunk_id = old.chunk_id; END",
        f"CREATE TRIGGER IF NOT EXISTS {t}_au AFTER UPDATE ON embeddings BEGIN "
        f"DELETE FROM {t} WHERE chunk_id = old.chunk_id; " + copy.format(row="new") + f" WHERE new.dim = {d}; END",
        # Rows written before the table existed (a new dimension from `dtrag reindex`).
        copy.format(row="e") + f" FROM embeddings e WHERE e.dim = {d} "
        f"AND NOT EXISTS (SELECT 1 FROM {t} v WHERE v.chunk_id = e.chunk_id)",
    ]
