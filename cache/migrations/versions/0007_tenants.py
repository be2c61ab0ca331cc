"""Tenants: whose each phrase and API key is, each tenant's own lexicon words, and what
each tenant's callers had synthesized per day, against a daily quota. Existing phrases
and keys are the `default` tenant's, but for admin keys, which stay site-wide (tenant
NULL) as they were.

Revision ID: 0007_tenants
Revises: 0006
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007_tenants"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("phrases", sa.Column("tenant", sa.String(32), nullable=False,
                                       server_default="default"))
    op.add_column("phrases", sa.Column("public", sa.Boolean(), nullable=False,
                                       server_default=sa.false()))
    op.create_index("ix_phrases_tenant", "phrases", ["tenant"])
    op.add_column("api_keys", sa.Column("tenant", sa.String(32), nullable=True))
    op.execute("UPDATE api_keys SET tenant = 'default' WHERE scope <> 'admin'")
    op.create_table(
        "tenant_words",
        sa.Column("tenant", sa.String(32), primary_key=True),
        sa.Column("word", sa.String(64), primary_key=True),
        sa.Column("pinyin", sa.String(400), nullable=False),
        sa.Column("updated", sa.Float(), nullable=False),
    )
    op.create_table(
        "tenants",
        sa.Column("name", sa.String(32), primary_key=True),
        sa.Column("quota", sa.Integer(), nullable=True),
        sa.Column("created", sa.Float(), nullable=False),
    )
    op.create_table(
        "tenant_usage",
        sa.Column("tenant", sa.String(32), primary_key=True),
        sa.Column("day", sa.String(10), primary_key=True),
        sa.Column("characters", sa.Integer(), nullable=False),
        sa.Column("misses", sa.Integer(), nullable=False),
    )


_VARIANT_COLUMNS = "key, format, rate, file, size, checksum"


def downgrade() -> None:
    op.drop_table("tenant_usage")
    op.drop_table("tenants")
    op.drop_table("tenant_words")
    with op.batch_alter_table("api_keys") as batch:
        batch.drop_column("tenant")
    op.drop_index("ix_phrases_tenant", "phrases")
    sqlite = op.get_bind().dialect.name == "sqlite"
    if sqlite:
        # SQLite drops a column by rebuilding the table, and dropping the old one cascades
        # (foreign keys are on) to every variant row: kept aside meanwhile, as in 0006.
        op.execute(f"CREATE TEMPORARY TABLE variants_kept AS SELECT {_VARIANT_COLUMNS} FROM variants")
    with op.batch_alter_table("phrases") as batch:
        batch.drop_column("public")
        batch.drop_column("tenant")
    if sqlite:
        op.execute("DELETE FROM variants")
        op.execute(f"INSERT INTO variants ({_VARIANT_COLUMNS}) SELECT {_VARIANT_COLUMNS} FROM variants_kept")
        op.execute("DROP TABLE variants_kept")
