"""Durable jobs: the jobs table (the job's truth), their stored payloads and their events

Revision ID: 0009_jobs
Revises: 0008_debate_decisions
Create Date: 2026-12-04
"""

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import JSONB

from alembic import op

revision = "0009_jobs"
down_revision = "0008_debate_decisions"
branch_labels = None
depends_on = None

_JSON = sa.JSON().with_variant(JSONB(), "postgresql")
_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def _ts(name: str, nullable: bool = True) -> sa.Column:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable)


def upgrade() -> None:
    op.create_table(
        "jobs",
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column("kind", sa.String(20), nullable=False),
        sa.Column("status", sa.String(20), nullable=False),
        sa.Column("mode", sa.String(20), nullable=False),
        sa.Column("mode_reason", sa.Text(), nullable=False, server_default=""),
        sa.Column("params", _JSON, nullable=False),
        sa.Column("attempt", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("max_attempts", sa.Integer(), nullable=False, server_default="3"),
        sa.Column("lease_owner", sa.String(100)),
        _ts("lease_expires_at"),
        _ts("heartbeat_at"),
        _ts("run_after"),
        sa.Column("progress_done", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("progress_total", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("progress_chunks", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("result", _JSON),
        sa.Column("error", sa.Text()),
        sa.Column("idempotency_scope", sa.String(64)),
        sa.Column("idempotency_key", sa.String(200)),
        sa.Column("request_hash", sa.String(64)),
        _ts("created_at", nullable=False),
        _ts("started_at"),
        _ts("finished_at"),
        _ts("updated_at", nullable=False),
    )
    op.create_index("ix_jobs_status", "jobs", ["status"])
    op.create_index("ix_jobs_created_at", "jobs", ["created_at"])
    op.create_table(
        "job_payloads",
        sa.Column("job_id", sa.String(32), sa.ForeignKey("jobs.id", ondelete="CASCADE"), primary_key=True),
        sa.Column("ordinal", sa.Integer(), primary_key=True),
        sa.Column("filename", sa.Text()),
        sa.Column("fields", _JSON, nullable=False),
        sa.Column("data", sa.LargeBinary()),
    )
    op.create_table(
        "job_events",
        sa.Column("id", _ID, primary_key=True, autoincrement=True),
        sa.Column("job_id", sa.String(32), nullable=False),
        _ts("at", nullable=False),
        sa.Column("event", sa.String(20), nullable=False),
        sa.Column("detail", _JSON, nullable=False),
    )
    op.create_index("ix_job_events_job_id", "job_events", ["job_id"])
    op.create_index("ix_job_events_at", "job_events", ["at"])


def downgrade() -> None:
    # Dropping the tables would lose what a 202 promised to ingest: refuse while any accepted job still
    # holds an upload it has not processed.
    pending = op.get_bind().execute(sa.text(
        "SELECT count(DISTINCT p.job_id) FROM job_payloads p JOIN jobs j ON j.id = p.job_id "
        "WHERE j.status IN ('queued', 'running')")).scalar_one()
    if pending:
        raise RuntimeError(
            f"refusing to drop the jobs tables: {pending} accepted job(s) still hold uploads they have not "
            "processed (job_payloads); let them finish (`dtrag jobs list --status queued`) or cancel them "
            "(`dtrag jobs cancel ID`), then downgrade again")
    op.drop_index("ix_job_events_at", "job_events")
    op.drop_index("ix_job_events_job_id", "job_events")
    op.drop_table("job_events")
    op.drop_table("job_payloads")
    op.drop_index("ix_jobs_created_at", "jobs")
    op.drop_index("ix_jobs_status", "jobs")
    op.drop_table("jobs")
