"""sqlite-vec `vec0` tables that mirror `embeddings`, one per dimension, kept in sync by triggers.

A `vec0` table keeps vectors in contiguous chunks and scans them in C, so a k-nearest-neighbour query
over the whole corpus reads blocks instead of one row per vector. The triggers write it in the same
transaction as `embeddings` (and FK cascades fire them too), so it cannot drift from the table it
mirrors. `model` and the document's `collection_id` are partition keys, so a query scans only its own
model's vectors in the collections it may see; `restricted` (the document carries access groups) is a
metadata column a groupless viewer's scan leaves out while it runs, and a trigger keeps it in step
with the document's flag.
"""

from __future__ import annotations


def table_name(dim: int) -> str:
    return f"vec_embeddings_{int(dim)}"


def ddl(dim: int) -> list[str]:
    """Idempotent statements creating the table and triggers for `dim` and filling it from `embeddings`
    (alembic/versions/0015_collections.py holds a frozen copy: change both together)."""
    t, d = table_name(dim), int(dim)
    copy = (f"INSERT INTO {t}(chunk_id, model, collection_id, restricted, embedding) "
            "SELECT {row}.chunk_id, {row}.model, d.collection_id, d.restricted, {row}.vector "
            "FROM chunks c JOIN documents d ON d.id = c.document_id WHERE c.id = {row}.chunk_id")
    return [
        f"CREATE VIRTUAL TABLE IF NOT EXISTS {t} USING vec0(chunk_id integer primary key, "
        f"model text partition key, collection_id integer partition key, restricted integer, "
        f"embedding float[{d}] distance_metric=cosine)",
        f"CREATE TRIGGER IF NOT EXISTS {t}_ai AFTER INSERT ON embeddings WHEN new.dim = {d} BEGIN "
        + copy.format(row="new") + "; END",
        f"CREATE TRIGGER IF NOT EXISTS {t}_ad AFTER DELETE ON embeddings WHEN old.dim = {d} BEGIN "
        f"DELETE FROM {t} WHERE chunk_id = old.chunk_id; END",
        f"CREATE TRIGGER IF NOT EXISTS {t}_au AFTER UPDATE ON embeddings BEGIN "
        f"DELETE FROM {t} WHERE chunk_id = old.chunk_id; " + copy.format(row="new") + f" AND new.dim = {d}; END",
        # Rewritten, not updated: vec0 refuses an UPDATE that selects several rows.
        f"CREATE TRIGGER IF NOT EXISTS {t}_restricted AFTER UPDATE OF restricted ON documents "
        f"WHEN old.restricted IS NOT new.restricted BEGIN "
        f"DELETE FROM {t} WHERE chunk_id IN (SELECT id FROM chunks WHERE document_id = new.id); "
        f"INSERT INTO {t}(chunk_id, model, collection_id, restricted, embedding) "
        "SELECT e.chunk_id, e.model, new.collection_id, new.restricted, e.vector FROM embeddings e "
        f"JOIN chunks c ON c.id = e.chunk_id WHERE c.document_id = new.id AND e.dim = {d}; END",
        # Rows written before the table existed (a new dimension from `dtrag reindex`).
        f"INSERT INTO {t}(chunk_id, model, collection_id, restricted, embedding) "
        "SELECT e.chunk_id, e.model, d.collection_id, d.restricted, e.vector FROM embeddings e "
        "JOIN chunks c ON c.id = e.chunk_id JOIN documents d ON d.id = c.document_id "
        f"WHERE e.dim = {d} AND NOT EXISTS (SELECT 1 FROM {t} v WHERE v.chunk_id = e.chunk_id)",
    ]


TRIGGER_SUFFIXES = ("ai", "ad", "au", "restricted")
