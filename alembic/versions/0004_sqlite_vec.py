"""sqlite-vec: a vec0 table mirroring embeddings on SQLite (k-nearest-neighbour scans in C)

Revision ID: 0004_sqlite_vec
Revises: 0003_learning_rollout
Create Date: 2026-12-01
"""

from alembic import op
from sqlalchemy import text

revision = "0004_sqlite_vec"
down_revision = "0003_learning_rollout"
branch_labels = None
depends_on = None

DEFAULT_DIM = 384  # multilingual-e5-small; other dimensions get their table from `dtrag reindex`


def ddl(dim: int) -> list[str]:
    """The vec0 table and triggers as this revision made them (0015_collections remakes them with the
    collection as a partition key); frozen here, since `vector_index.ddl` follows the current schema."""
    t, d = f"vec_embeddings_{int(dim)}", int(dim)
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
        copy.format(row="e") + f" FROM embeddings e WHERE e.dim = {d} "
        f"AND NOT EXISTS (SELECT 1 FROM {t} v WHERE v.chunk_id = e.chunk_id)",
    ]


def upgrade() -> None:
    if op.get_bind().dialect.name != "sqlite":
        return
    for statement in ddl(DEFAULT_DIM):
        op.execute(statement)


def downgrade() -> None:
    bind = op.get_bind()
    if bind.dialect.name != "sqlite":
        return
    tables = bind.execute(
        text("SELECT name FROM sqlite_master WHERE type = 'table' AND sql LIKE 'CREATE VIRTUAL TABLE%USING vec0%'")
    ).scalars().all()
    for table in tables:  # every dimension's table, with its triggers
        for suffix in ("ai", "ad", "au"):
            op.execute(f"DROP TRIGGER IF EXISTS {table}_{suffix}")
        op.execute(f"DROP TABLE IF EXISTS {table}")
