"""Indexes for retention: the prune finds expired idempotency keys and old canary evaluations by time

(`request_events.ts` and `bandit_decisions.created_at` are indexed already.)

Revision ID: 0007_retention
Revises: 0006_names
Create Date: 2026-12-03
"""

from alembic import op

revision = "0007_retention"
down_revision = "0006_names"
branch_labels = None
depends_on = None

_INDEXES = [
    ("ix_idempotency_keys_created_at", "idempotency_keys", "created_at"),
    ("ix_canary_evaluations_at", "canary_evaluations", "at"),
]


def upgrade() -> None:
    for name, table, column in _INDEXES:
        op.create_index(name, table, [column])


def downgrade() -> None:
    for name, table, _ in reversed(_INDEXES):
        op.drop_index(name, table)
