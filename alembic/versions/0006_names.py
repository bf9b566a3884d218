"""Column names that say what they hold

`q_values.q2, n, m` become `q_squared, updates, experiences`; `flag_overrides.rollout_percentage`
(it always held a fraction) becomes `rollout_fraction`. RENAME COLUMN works on both backends.

Revision ID: 0006_names
Revises: 0005_pg_bm25_postings
Create Date: 2026-12-02
"""

from alembic import op

revision = "0006_names"
down_revision = "0005_pg_bm25_postings"
branch_labels = None
depends_on = None

_RENAMES = [
    ("q_values", "q2", "q_squared"),
    ("q_values", "n", "updates"),
    ("q_values", "m", "experiences"),
    ("flag_overrides", "rollout_percentage", "rollout_fraction"),
]


def upgrade() -> None:
    for table, old, new in _RENAMES:
        op.execute(f"ALTER TABLE {table} RENAME COLUMN {old} TO {new}")


def downgrade() -> None:
    for table, old, new in reversed(_RENAMES):
        op.execute(f"ALTER TABLE {table} RENAME COLUMN {new} TO {old}")
