"""Case memory: past questions with their judged passages (cases, case_chunks), the selector's versions,
and the log of requests served with case memory on

Revision ID: 0016_cases
Revises: 0015_collections
Create Date: 2026-12-09
"""

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import JSONB

from alembic import op

revision = "0016_cases"
down_revision = "0015_collections"
branch_labels = None
depends_on = None

_JSON = sa.JSON().with_variant(JSONB(), "postgresql")
_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def _ts(name: str, nullable: bool = False) -> sa.Column:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable)


def upgrade() -> None:
    op.create_table(
        "cases",
        sa.Column("id", _ID, primary_key=True, autoincrement=True),
        sa.Column("collection_id", sa.Integer(), sa.ForeignKey("collections.id", ondelete="CASCADE"), nullable=False),
        sa.Column("ref", sa.String(300), nullable=False),
        sa.Column("origin", sa.String(10), nullable=False),
        sa.Column("key_id", sa.String(32)),
        sa.Column("query", sa.Text(), nullable=False),
        sa.Column("language", sa.String(8), nullable=False),
        sa.Column("strategy", sa.String(50)),
        sa.Column("model", sa.String(200), nullable=False),
        sa.Column("dim", sa.Integer(), nullable=False),
        sa.Column("vector", sa.LargeBinary(), nullable=False),
        sa.Column("reward", sa.Float(), nullable=False),
        _ts("created_at"),
        _ts("updated_at"),
        sa.UniqueConstraint("collection_id", "ref", name="uq_cases_collection_ref"),
        sqlite_autoincrement=True,
    )
    op.create_index("ix_cases_collection_id", "cases", ["collection_id"])
    op.create_index("ix_cases_updated_at", "cases", ["updated_at"])
    op.create_table(
        "case_chunks",
        sa.Column("case_id", _ID, sa.ForeignKey("cases.id", ondelete="CASCADE"), primary_key=True),
        sa.Column("chunk_id", _ID, sa.ForeignKey("chunks.id", ondelete="CASCADE"), primary_key=True),
        sa.Column("shown_rank", sa.Integer()),
        sa.Column("judgement", sa.Float(), nullable=False),
    )
    op.create_index("ix_case_chunks_chunk_id", "case_chunks", ["chunk_id"])
    op.create_table(
        "case_selectors",
        sa.Column("version", sa.BigInteger(), primary_key=True, autoincrement=False),
        sa.Column("parameters", _JSON, nullable=False),
        sa.Column("examples", sa.Integer(), nullable=False),
        sa.Column("detail", _JSON, nullable=False),
        _ts("created_at"),
    )
    op.create_table(
        "case_decisions",
        sa.Column("request_id", sa.String(64), primary_key=True),
        _ts("created_at"),
        sa.Column("endpoint", sa.String(10), nullable=False),
        sa.Column("key_id", sa.String(32)),
        sa.Column("collections", _JSON, nullable=False),
        sa.Column("query", sa.Text(), nullable=False),
        sa.Column("strategy", sa.String(50), nullable=False),
        sa.Column("selector_version", sa.BigInteger()),
        sa.Column("served_chunk_ids", _JSON, nullable=False),
        sa.Column("candidates", _JSON, nullable=False),
        sa.Column("changed", sa.Boolean(), nullable=False),
        sa.Column("latency_ms", sa.Float(), nullable=False),
        _ts("rewarded_at", nullable=True),
    )
    op.create_index("ix_case_decisions_created_at", "case_decisions", ["created_at"])


def downgrade() -> None:
    op.drop_index("ix_case_decisions_created_at", table_name="case_decisions")
    op.drop_table("case_decisions")
    op.drop_table("case_selectors")
    op.drop_index("ix_case_chunks_chunk_id", table_name="case_chunks")
    op.drop_table("case_chunks")
    op.drop_index("ix_cases_updated_at", table_name="cases")
    op.drop_index("ix_cases_collection_id", table_name="cases")
    op.drop_table("cases")
