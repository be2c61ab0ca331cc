"""Phrases and their encoded variants.

Revision ID: 0001
Revises:
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "phrases",
        sa.Column("key", sa.String(32), primary_key=True),
        sa.Column("text", sa.Text(), nullable=False),
        sa.Column("engine", sa.String(64), nullable=False),
        sa.Column("engine_version", sa.String(128), nullable=False),
        sa.Column("voice", sa.String(64), nullable=False),
        sa.Column("style", sa.String(64), nullable=False),
        sa.Column("speed", sa.Float(), nullable=False),
        sa.Column("pitch", sa.Float(), nullable=False),
        sa.Column("volume", sa.Float(), nullable=False),
        sa.Column("duration", sa.Float(), nullable=False),
        sa.Column("sample_rate", sa.Integer(), nullable=False),
        sa.Column("bytes", sa.Integer(), nullable=False),
        sa.Column("checksum", sa.String(16), nullable=False),
        sa.Column("synth_seconds", sa.Float(), nullable=False),
        sa.Column("created", sa.Float(), nullable=False),
        sa.Column("last_used", sa.Float(), nullable=False),
        sa.Column("hits", sa.Integer(), nullable=False),
        sa.Column("pinned", sa.Boolean(), nullable=False),
        sa.Column("phrase_id", sa.String(128), nullable=True),
        sa.Column("tags", sa.Text(), nullable=False),
    )
    op.create_index("ix_phrases_last_used", "phrases", ["last_used"])
    op.create_index("ix_phrases_pinned", "phrases", ["pinned"])
    op.create_index("ix_phrases_phrase_id", "phrases", ["phrase_id"])
    op.create_table(
        "variants",
        sa.Column("key", sa.String(32), sa.ForeignKey("phrases.key", ondelete="CASCADE"),
                  primary_key=True),
        sa.Column("format", sa.String(16), primary_key=True),
        sa.Column("rate", sa.Integer(), primary_key=True),
        sa.Column("file", sa.String(128), nullable=False),
        sa.Column("size", sa.Integer(), nullable=False),
        sa.Column("checksum", sa.String(16), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("variants")
    op.drop_table("phrases")
