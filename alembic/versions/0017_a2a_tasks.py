"""Doors: the A2A agent's tasks (`a2a_tasks`), so any worker reads a task another ran

The columns are the a2a-sdk's task model (`a2a.server.models.TaskMixin`, read and written by its
`DatabaseTaskStore`, apps/doors/a2a_tasks.py) with two widths of DT-RAG's own: `context_id` is the
client's to choose, so it is text, not the SDK's 36 characters (PostgreSQL would refuse a longer one
mid-task), and `id`, a server-made UUID, has room.

Revision ID: 0017_a2a_tasks
Revises: 0016_cases
Create Date: 2026-12-10
"""

import sqlalchemy as sa

from alembic import op

revision = "0017_a2a_tasks"
down_revision = "0016_cases"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "a2a_tasks",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("context_id", sa.Text(), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("owner", sa.String(255), nullable=True),  # the key id that sent the task
        sa.Column("last_updated", sa.DateTime(), nullable=True),  # naive UTC, as the SDK writes it
        sa.Column("status", sa.JSON(), nullable=False),
        sa.Column("artifacts", sa.JSON(), nullable=True),
        sa.Column("history", sa.JSON(), nullable=True),
        sa.Column("protocol_version", sa.String(16), nullable=True),
        sa.Column("metadata", sa.JSON(), nullable=True),
    )
    # The SDK's index: a key's tasks, newest first (ListTasks).
    op.create_index("idx_a2a_tasks_owner_last_updated", "a2a_tasks", ["owner", "last_updated"])


def downgrade() -> None:
    op.drop_index("idx_a2a_tasks_owner_last_updated", table_name="a2a_tasks")
    op.drop_table("a2a_tasks")
