"""Ask page: conversations and their turns (follow-ups are rewritten against them), and feedback rows

Revision ID: 0014_conversations
Revises: 0013_tool_calls
Create Date: 2026-12-07
"""

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import JSONB

from alembic import op

revision = "0014_conversations"
down_revision = "0013_tool_calls"
branch_labels = None
depends_on = None

_JSON = sa.JSON().with_variant(JSONB(), "postgresql")
_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def _ts(name: str, nullable: bool = False) -> sa.Column:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable)


def upgrade() -> None:
    op.create_table(
        "conversations",
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column("key_id", sa.String(32), nullable=False),
        sa.Column("title", sa.Text(), nullable=False, server_default=""),
        _ts("created_at"),
        _ts("updated_at"),
    )
    op.create_index("ix_conversations_key_id", "conversations", ["key_id"])
    op.create_index("ix_conversations_updated_at", "conversations", ["updated_at"])
    op.create_table(
        "conversation_turns",
        sa.Column("id", _ID, primary_key=True, autoincrement=True),
        sa.Column("conversation_id", sa.String(32), sa.ForeignKey("conversations.id", ondelete="CASCADE"),
                  nullable=False),
        sa.Column("request_id", sa.String(64), nullable=False),
        sa.Column("endpoint", sa.String(10), nullable=False),
        sa.Column("question", sa.Text(), nullable=False),
        sa.Column("rewritten", sa.Text()),
        sa.Column("subject", sa.Text()),
        sa.Column("answer", sa.Text(), nullable=False, server_default=""),
        sa.Column("sources", _JSON, nullable=False),
        _ts("created_at"),
        sqlite_autoincrement=True,
    )
    op.create_index("ix_conversation_turns_conversation_id", "conversation_turns", ["conversation_id"])
    op.create_index("ix_conversation_turns_request_id", "conversation_turns", ["request_id"])
    op.create_table(
        "feedback",
        sa.Column("request_id", sa.String(64), primary_key=True),
        sa.Column("key_id", sa.String(32), primary_key=True),
        sa.Column("endpoint", sa.String(10)),
        sa.Column("rating", sa.Float()),
        sa.Column("helpful", sa.Boolean()),
        sa.Column("relevant_chunk_ids", _JSON),
        sa.Column("irrelevant_chunk_ids", _JSON),
        sa.Column("comment", sa.Text()),
        _ts("created_at"),
        _ts("updated_at"),
    )
    op.create_index("ix_feedback_updated_at", "feedback", ["updated_at"])


def downgrade() -> None:
    op.drop_index("ix_feedback_updated_at", table_name="feedback")
    op.drop_table("feedback")
    op.drop_index("ix_conversation_turns_request_id", table_name="conversation_turns")
    op.drop_index("ix_conversation_turns_conversation_id", table_name="conversation_turns")
    op.drop_table("conversation_turns")
    op.drop_index("ix_conversations_updated_at", table_name="conversations")
    op.drop_index("ix_conversations_key_id", table_name="conversations")
    op.drop_table("conversations")
