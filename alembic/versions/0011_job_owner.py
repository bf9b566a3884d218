"""Jobs: the API key that submitted each (who may read and cancel it, whose quota it counts against) and
why a failed job failed

Revision ID: 0011_job_owner
Revises: 0010_lexical_analyzer
Create Date: 2026-12-06
"""

import sqlalchemy as sa

from alembic import op

revision = "0011_job_owner"
down_revision = "0010_lexical_analyzer"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Jobs from before this revision have no owner: only an admin key sees them.
    op.add_column("jobs", sa.Column("owner_key_id", sa.String(32), nullable=True))
    op.add_column("jobs", sa.Column("error_kind", sa.String(20), nullable=True))
    op.create_index("ix_jobs_owner_key_id", "jobs", ["owner_key_id"])


def downgrade() -> None:
    op.drop_index("ix_jobs_owner_key_id", "jobs")
    # In place, not as a batch: SQLite's batch copies `jobs` and drops the original, and with foreign
    # keys on that drop cascades to every stored upload in job_payloads. SQLite >= 3.35 drops a column.
    op.drop_column("jobs", "error_kind")
    op.drop_column("jobs", "owner_key_id")
