"""Request events say whether a valid key came with them; the admin actions table (audit and the
cleanup broadcast every worker polls)

Revision ID: 0012_admin_hardening
Revises: 0011_job_owner
Create Date: 2026-12-07
"""

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import JSONB

from alembic import op

revision = "0012_admin_hardening"
down_revision = "0011_job_owner"
branch_labels = None
depends_on = None

_JSON = sa.JSON().with_variant(JSONB(), "postgresql")
_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    # Events recorded before this revision did not say; counting them as without a key only means a
    # canary window right after the upgrade starts from fewer samples (it holds until it has enough).
    op.add_column("request_events", sa.Column("authenticated", sa.Boolean(), nullable=False,
                                              server_default=sa.false()))
    op.create_table(
        "admin_actions",
        sa.Column("id", _ID, primary_key=True, autoincrement=True),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("actor", sa.String(200), nullable=False),
        sa.Column("action", sa.String(40), nullable=False),
        sa.Column("detail", _JSON, nullable=False),
    )
    op.create_index("ix_admin_actions_action", "admin_actions", ["action"])


def downgrade() -> None:
    op.drop_index("ix_admin_actions_action", "admin_actions")
    op.drop_table("admin_actions")
    with op.batch_alter_table("request_events") as batch:
        batch.drop_column("authenticated")
