"""The store's counters summed over every replica that shares the index.

Revision ID: 0003
Revises: 0002
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

COUNTERS = ("hits", "misses", "evictions", "saved_seconds")


def upgrade() -> None:
    table = op.create_table(
        "store_counters",
        sa.Column("name", sa.String(32), primary_key=True),
        sa.Column("value", sa.Float(), nullable=False),
    )
    op.bulk_insert(table, [{"name": name, "value": 0.0} for name in COUNTERS])


def downgrade() -> None:
    op.drop_table("store_counters")
