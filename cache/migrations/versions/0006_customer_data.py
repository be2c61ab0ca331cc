"""Customer data: a prompt's text may be left out of the index (only its length kept), a
prompt may expire, and the keys of prompts purged or expired are logged for a while so
that every replica forgets them from memory too.

Revision ID: 0006
Revises: 0005
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

_VARIANT_COLUMNS = "key, format, rate, file, size, checksum"


def upgrade() -> None:
    sqlite = op.get_bind().dialect.name == "sqlite"
    if sqlite:
        # SQLite changes a column's nullability by rebuilding the table, and dropping the
        # old one cascades (foreign keys are on) to every variant row: kept aside meanwhile.
        op.execute(f"CREATE TEMPORARY TABLE variants_kept AS SELECT {_VARIANT_COLUMNS} FROM variants")
    with op.batch_alter_table("phrases") as batch:
        batch.alter_column("text", existing_type=sa.Text(), nullable=True)
        batch.add_column(sa.Column("text_length", sa.Integer(), nullable=True))
        batch.add_column(sa.Column("expires", sa.Float(), nullable=True))
    op.create_index("ix_phrases_expires", "phrases", ["expires"])
    if sqlite:
        op.execute("DELETE FROM variants")
        op.execute(f"INSERT INTO variants ({_VARIANT_COLUMNS}) SELECT {_VARIANT_COLUMNS} FROM variants_kept")
        op.execute("DROP TABLE variants_kept")
    op.execute("UPDATE phrases SET text_length = length(text)")
    op.create_table(
        "purged_keys",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("key", sa.String(32), nullable=False),
        sa.Column("at", sa.Float(), nullable=False),
    )
    op.create_index("ix_purged_keys_at", "purged_keys", ["at"])


def downgrade() -> None:
    op.drop_table("purged_keys")
    op.drop_index("ix_phrases_expires", "phrases")
    op.execute("UPDATE phrases SET text = '' WHERE text IS NULL")
    sqlite = op.get_bind().dialect.name == "sqlite"
    if sqlite:  # the table is rebuilt again: its variants kept aside, as on the way up
        op.execute(f"CREATE TEMPORARY TABLE variants_kept AS SELECT {_VARIANT_COLUMNS} FROM variants")
    with op.batch_alter_table("phrases") as batch:
        batch.drop_column("expires")
        batch.drop_column("text_length")
        batch.alter_column("text", existing_type=sa.Text(), nullable=False)
    if sqlite:
        op.execute("DELETE FROM variants")
        op.execute(f"INSERT INTO variants ({_VARIANT_COLUMNS}) SELECT {_VARIANT_COLUMNS} FROM variants_kept")
        op.execute("DROP TABLE variants_kept")
