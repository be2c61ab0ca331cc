"""Warm-up jobs, so that any replica answers for a job another one runs.

Revision ID: 0002
Revises: 0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "warm_jobs",
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("progress", sa.Text(), nullable=False),  # the job's JSON progress
        sa.Column("updated", sa.Float(), nullable=False),
    )
    op.create_index("ix_warm_jobs_updated", "warm_jobs", ["updated"])


def downgrade() -> None:
    op.drop_table("warm_jobs")
