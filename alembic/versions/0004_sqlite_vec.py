"""sqlite-vec: a vec0 table mirroring embeddings on SQLite (k-nearest-neighbour scans in C)

Revision ID: 0004_sqlite_vec
Revises: 0003_learning_rollout
Create Date: 2026-12-01
"""

from alembic import op
from sqlalchemy import text

from apps.search.stores.sqlite import vector_index

revision = "0004_sqlite_vec"
down_revision = "0003_learning_rollout"
branch_labels = None
depends_on = None

DEFAULT_DIM = 384  # multilingual-e5-small; other dimensions get their table from `dtrag reindex`


def upgrade() -> None:
    if op.get_bind().dialect.name != "sqlite":
        return
    for statement in vector_index.ddl(DEFAULT_DIM):
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
