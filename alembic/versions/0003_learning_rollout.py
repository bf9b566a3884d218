"""learning and rollout: bandit decisions, replay buffer, Q-table, flag overrides and audit, leases,
canary evaluations

Revision ID: 0003_learning_rollout
Revises: 0002_service
Create Date: 2026-11-22
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision = "0003_learning_rollout"
down_revision = "0002_service"
branch_labels = None
depends_on = None


def upgrade() -> None:
    pg = op.get_bind().dialect.name == "postgresql"
    json_type = JSONB() if pg else sa.JSON()
    big_id = sa.BigInteger() if pg else sa.Integer()
    ts = sa.DateTime(timezone=True)
    op.create_table(
        "bandit_decisions",
        sa.Column("request_id", sa.String(64), primary_key=True),
        sa.Column("created_at", ts, nullable=False),
        sa.Column("endpoint", sa.String(50), nullable=False),
        sa.Column("state", sa.String(120), nullable=False),
        sa.Column("action", sa.String(50), nullable=False),
        # The full distribution the action was drawn from, {arm: probability}: what OPE needs.
        sa.Column("probabilities", json_type, nullable=False),
        sa.Column("policy_version", sa.BigInteger(), nullable=False),
        sa.Column("variant", sa.String(20), nullable=False),
        sa.Column("latency_ms", sa.Float(), nullable=False),
        sa.Column("served_chunk_ids", json_type, nullable=False),
        # Whether experience replay was on for this request: its reward may become an experience.
        sa.Column("replay", sa.Boolean(), nullable=False),
        sa.Column("implicit_reward", sa.Float()),
        sa.Column("reward", sa.Float()),
        sa.Column("reward_source", sa.String(20)),
        sa.Column("feedback", json_type),
        sa.Column("rewarded_at", ts),
    )
    op.create_index("ix_bandit_decisions_created_at", "bandit_decisions", ["created_at"])
    op.create_table(
        "replay_experiences",
        sa.Column("id", big_id, primary_key=True, autoincrement=True),
        sa.Column("request_id", sa.String(64), nullable=False),
        sa.Column("state", sa.String(120), nullable=False),
        sa.Column("action", sa.String(50), nullable=False),
        sa.Column("reward", sa.Float(), nullable=False),
        sa.Column("propensity", sa.Float(), nullable=False),
        sa.Column("created_at", ts, nullable=False),
        # Set by the first batch update that learns from it: replays re-apply experiences, and the
        # policy's uncertainty must count each one once.
        sa.Column("applied", sa.Boolean(), nullable=False, server_default=sa.false()),
        sqlite_autoincrement=True,
    )
    op.create_table(
        "q_values",
        sa.Column("policy", sa.String(50), primary_key=True),
        sa.Column("state", sa.String(120), primary_key=True),
        sa.Column("action", sa.String(50), primary_key=True),
        sa.Column("q", sa.Float(), nullable=False),
        # Second moment of the targets, for the uncertainty the conservative greedy policy needs.
        sa.Column("q2", sa.Float(), nullable=False),
        sa.Column("n", sa.BigInteger(), nullable=False),  # updates, replays included
        sa.Column("m", sa.BigInteger(), nullable=False),  # distinct experiences learned from
        sa.Column("updated_at", ts, nullable=False),
    )
    op.create_table(
        "bandit_policies",
        sa.Column("name", sa.String(50), primary_key=True),
        sa.Column("version", sa.BigInteger(), nullable=False),
        sa.Column("learned_through", sa.BigInteger(), nullable=False),
        sa.Column("batches", sa.BigInteger(), nullable=False),
        sa.Column("updated_at", ts, nullable=False),
    )
    op.create_table(
        "flag_overrides",
        sa.Column("name", sa.String(64), primary_key=True),
        sa.Column("enabled", sa.Boolean()),
        sa.Column("rollout_percentage", sa.Float()),
        sa.Column("user_ids", json_type),
        sa.Column("kill", sa.Boolean(), nullable=False, server_default=sa.false()),
        sa.Column("updated_by", sa.String(200), nullable=False),
        sa.Column("updated_at", ts, nullable=False),
    )
    op.create_table(
        "flag_audit",
        sa.Column("id", big_id, primary_key=True, autoincrement=True),
        sa.Column("name", sa.String(64), nullable=False),
        sa.Column("actor", sa.String(200), nullable=False),
        sa.Column("at", ts, nullable=False),
        sa.Column("old", json_type),
        sa.Column("new", json_type),
        sa.Column("reason", sa.Text(), nullable=False),
    )
    op.create_index("ix_flag_audit_name", "flag_audit", ["name", "id"])
    op.create_table(
        "leases",
        sa.Column("name", sa.String(64), primary_key=True),
        sa.Column("holder", sa.String(100), nullable=False),
        sa.Column("expires_at", sa.Float(), nullable=False),
    )
    op.create_table(
        "canary_evaluations",
        sa.Column("id", big_id, primary_key=True, autoincrement=True),
        sa.Column("flag", sa.String(64), nullable=False),
        sa.Column("at", ts, nullable=False),
        sa.Column("verdict", sa.String(20), nullable=False),
        sa.Column("action", sa.String(20), nullable=False),
        sa.Column("consecutive_failures", sa.Integer(), nullable=False),
        sa.Column("detail", json_type, nullable=False),
    )
    op.create_index("ix_canary_evaluations_flag", "canary_evaluations", ["flag", "id"])
    with op.batch_alter_table("request_events") as batch:
        batch.add_column(sa.Column("quality", sa.Float()))
        batch.add_column(sa.Column("llm_provider", sa.String(50)))
        batch.add_column(sa.Column("llm_model", sa.String(200)))
        batch.add_column(sa.Column("llm_input_tokens", sa.Integer()))
        batch.add_column(sa.Column("llm_output_tokens", sa.Integer()))
        batch.add_column(sa.Column("llm_cost_usd", sa.Float()))
        batch.add_column(sa.Column("llm_ms", sa.Float()))
    op.create_index("ix_request_events_variant_ts", "request_events", ["variant", "ts"])


def downgrade() -> None:
    op.drop_index("ix_request_events_variant_ts", "request_events")
    with op.batch_alter_table("request_events") as batch:
        for column in ("llm_ms", "llm_cost_usd", "llm_output_tokens", "llm_input_tokens", "llm_model",
                       "llm_provider", "quality"):
            batch.drop_column(column)
    for table in ("canary_evaluations", "leases", "flag_audit", "flag_overrides", "bandit_policies", "q_values",
                  "replay_experiences", "bandit_decisions"):
        op.drop_table(table)
