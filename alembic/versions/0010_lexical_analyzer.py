"""The Korean analyser the lexical index was built with, so queries analyse the same way

Revision ID: 0010_lexical_analyzer
Revises: 0009_jobs
Create Date: 2026-12-05
"""

import sqlalchemy as sa

from alembic import op

revision = "0010_lexical_analyzer"
down_revision = "0009_jobs"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Every corpus before this revision was analysed with Kiwi; NULL means "not yet decided" (no chunks).
    op.add_column("corpus_state", sa.Column("lexical_analyzer", sa.String(20), nullable=True))
    op.execute("UPDATE corpus_state SET lexical_analyzer = 'kiwi' WHERE EXISTS (SELECT 1 FROM chunks)")


def downgrade() -> None:
    with op.batch_alter_table("corpus_state") as batch:
        batch.drop_column("lexical_analyzer")
