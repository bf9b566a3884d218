"""PostgreSQL BM25: each posting carries its chunk's length, corpus statistics from an index

Scoring a posting needed its chunk's analysed length, a lookup into `chunks` per posting (tens of
thousands per query); with the length in the posting, scoring reads only the postings' index.

Revision ID: 0005_pg_bm25_postings
Revises: 0004_sqlite_vec
Create Date: 2026-12-01
"""

from alembic import op

revision = "0005_pg_bm25_postings"
down_revision = "0004_sqlite_vec"
branch_labels = None
depends_on = None


def upgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    op.execute("ALTER TABLE chunk_terms ADD COLUMN dl integer")
    op.execute("UPDATE chunk_terms t SET dl = c.lexical_length FROM chunks c WHERE c.id = t.chunk_id")
    op.execute("ALTER TABLE chunk_terms ALTER COLUMN dl SET NOT NULL")
    # Postings of a term in one index-only range scan; corpus size and mean length from another.
    op.execute("CREATE INDEX ix_chunk_terms_term_postings ON chunk_terms (term) INCLUDE (chunk_id, tf, dl)")
    op.execute("CREATE INDEX ix_chunks_lexical_length ON chunks (lexical_length)")


def downgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    op.execute("DROP INDEX IF EXISTS ix_chunks_lexical_length")
    op.execute("DROP INDEX IF EXISTS ix_chunk_terms_term_postings")
    op.execute("ALTER TABLE chunk_terms DROP COLUMN dl")
