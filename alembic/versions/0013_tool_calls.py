"""Doors: the MCP servers operators registered (`dtrag tools add`) and the audit of every tool-call decision

Revision ID: 0013_tool_calls
Revises: 0012_admin_hardening
Create Date: 2026-12-07
"""

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import JSONB

from alembic import op

revision = "0013_tool_calls"
down_revision = "0012_admin_hardening"
branch_labels = None
depends_on = None

_JSON = sa.JSON().with_variant(JSONB(), "postgresql")
_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "tool_servers",
        sa.Column("name", sa.String(64), primary_key=True),
        sa.Column("command", sa.Text(), nullable=True),
        sa.Column("args", _JSON, nullable=False),
        sa.Column("env", _JSON, nullable=False),
        sa.Column("url", sa.Text(), nullable=True),
        sa.Column("headers", _JSON, nullable=False),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_table(
        "tool_calls",
        sa.Column("id", _ID, primary_key=True, autoincrement=True),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("request_id", sa.String(64), nullable=False),
        sa.Column("direction", sa.String(3), nullable=False),
        sa.Column("key_id", sa.String(32), nullable=True),
        sa.Column("tool", sa.String(200), nullable=False),
        sa.Column("decision", sa.String(10), nullable=False),
        sa.Column("reason", sa.String(300), nullable=False),
        sa.Column("arguments", _JSON, nullable=False),
        sa.Column("outcome", sa.String(20), nullable=True),
        sa.Column("latency_ms", sa.Float(), nullable=True),
    )
    op.create_index("ix_tool_calls_at", "tool_calls", ["at"])
    op.create_index("ix_tool_calls_request_id", "tool_calls", ["request_id"])


def downgrade() -> None:
    op.drop_index("ix_tool_calls_request_id", "tool_calls")
    op.drop_index("ix_tool_calls_at", "tool_calls")
    op.drop_table("tool_calls")
    op.drop_table("tool_servers")
