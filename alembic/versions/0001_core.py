"""core: documents, chunks, embeddings and the lexical index of each backend

Revision ID: 0001_core
Revises:
Create Date: 2026-11-22
"""

import sqlalchemy as sa
from alembic import op
from pgvector.sqlalchemy import VECTOR
from sqlalchemy.dialects.postgresql import JSONB

revision = "0001_core"
down_revision = None
branch_labels = None
depends_on = None

DEFAULT_DIM = 384  # multilingual-e5-small; other dimensions get their index from `dtrag reindex`


def _is_pg() -> bool:
    return op.get_bind().dialect.name == "postgresql"


def upgrade() -> None:
    pg = _is_pg()
    big_id = sa.BigInteger() if pg else sa.Integer()
    json_type = JSONB() if pg else sa.JSON()
    if pg:
        op.execute("CREATE EXTENSION IF NOT EXISTS vector")

    op.create_table(
        "documents",
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column("external_id", sa.String(512), unique=True),
        sa.Column("title", sa.Text(), nullable=False, server_default=""),
        sa.Column("source_url", sa.Text()),
        sa.Column("content_type", sa.String(100), nullable=False),
        sa.Column("checksum", sa.String(64), nullable=False),
        sa.Column("language", sa.String(8), nullable=False),
        sa.Column("taxonomy_path", sa.Text(), nullable=False, server_default=""),
        sa.Column("metadata", json_type, nullable=False),
        sa.Column("chunk_count", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("token_count", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_documents_checksum", "documents", ["checksum"])
    op.create_index("ix_documents_language", "documents", ["language"])
    op.create_index("ix_documents_taxonomy_path", "documents", ["taxonomy_path"])

    op.create_table(
        "chunks",
        sa.Column("id", big_id, primary_key=True, autoincrement=True),
        sa.Column("document_id", sa.String(32), sa.ForeignKey("documents.id", ondelete="CASCADE"), nullable=False),
        sa.Column("ordinal", sa.Integer(), nullable=False),
        sa.Column("text", sa.Text(), nullable=False),
        sa.Column("token_count", sa.Integer(), nullable=False),
        sa.Column("lexical", sa.Text(), nullable=False),
        sa.Column("lexical_length", sa.Integer(), nullable=False),
        sa.Column("language", sa.String(8), nullable=False),
        sa.UniqueConstraint("document_id", "ordinal", name="uq_chunks_document_ordinal"),
        sqlite_autoincrement=True,
    )
    op.create_index("ix_chunks_document_id", "chunks", ["document_id"])

    op.create_table(
        "embeddings",
        sa.Column("chunk_id", big_id, sa.ForeignKey("chunks.id", ondelete="CASCADE"), primary_key=True),
        sa.Column("model", sa.String(200), nullable=False),
        sa.Column("dim", sa.Integer(), nullable=False),
        sa.Column("vector", VECTOR() if pg else sa.LargeBinary(), nullable=False),
    )
    op.create_index("ix_embeddings_model", "embeddings", ["model"])

    if pg:
        # Postings for BM25 computed in SQL (IDF, TF saturation, length normalisation).
        op.create_table(
            "chunk_terms",
            sa.Column("term", sa.Text(), nullable=False),
            sa.Column("chunk_id", big_id, sa.ForeignKey("chunks.id", ondelete="CASCADE"), nullable=False),
            sa.Column("tf", sa.Integer(), nullable=False),
            sa.PrimaryKeyConstraint("term", "chunk_id", name="pk_chunk_terms"),
        )
        op.create_index("ix_chunk_terms_chunk_id", "chunk_terms", ["chunk_id"])
        # An untyped vector column keeps reindexing to another model possible; each dimension gets a
        # partial expression index that dense queries match exactly.
        op.execute(
            f"CREATE INDEX ix_embeddings_hnsw_{DEFAULT_DIM} ON embeddings USING hnsw "
            f"((vector::vector({DEFAULT_DIM})) vector_cosine_ops) WHERE dim = {DEFAULT_DIM}"
        )
    else:
        op.execute(
            "CREATE VIRTUAL TABLE chunks_fts USING fts5("
            "lexical, content='chunks', content_rowid='id', tokenize='unicode61 remove_diacritics 0')"
        )
        op.execute(
            "CREATE TRIGGER chunks_fts_ai AFTER INSERT ON chunks BEGIN "
            "INSERT INTO chunks_fts(rowid, lexical) VALUES (new.id, new.lexical); END"
        )
        op.execute(
            "CREATE TRIGGER chunks_fts_ad AFTER DELETE ON chunks BEGIN "
            "INSERT INTO chunks_fts(chunks_fts, rowid, lexical) VALUES ('delete', old.id, old.lexical); END"
        )
        op.execute(
            "CREATE TRIGGER chunks_fts_au AFTER UPDATE OF lexical ON chunks BEGIN "
            "INSERT INTO chunks_fts(chunks_fts, rowid, lexical) VALUES ('delete', old.id, old.lexical); "
            "INSERT INTO chunks_fts(rowid, lexical) VALUES (new.id, new.lexical); END"
        )


def downgrade() -> None:
    if _is_pg():
        op.drop_table("chunk_terms")
    else:
        for trigger in ("chunks_fts_ai", "chunks_fts_ad", "chunks_fts_au"):
            op.execute(f"DROP TRIGGER IF EXISTS {trigger}")
        op.execute("DROP TABLE IF EXISTS chunks_fts")
    op.drop_table("embeddings")
    op.drop_table("chunks")
    op.drop_table("documents")
