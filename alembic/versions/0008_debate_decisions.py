"""The decision log records whether a request debated and what the debate cost

Revision ID: 0008_debate_decisions
Revises: 0007_retention
Create Date: 2026-12-02
"""

import sqlalchemy as sa

from alembic import op

revision = "0008_debate_decisions"
down_revision = "0007_retention"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("bandit_decisions") as batch:
        batch.add_column(sa.Column("debated", sa.Boolean(), nullable=False, server_default=sa.false()))
        batch.add_column(sa.Column("debate_llm_calls", sa.Integer(), nullable=False, server_default="0"))
        batch.add_column(sa.Column("debate_cost_usd", sa.Float(), nullable=False, server_default="0"))


def downgrade() -> None:
    with op.batch_alter_table("bandit_decisions") as batch:
        batch.drop_column("debate_cost_usd")
        batch.drop_column("debate_llm_calls")
        batch.drop_column("debated")
