"""The site's lexicon words, edited through /admin/lexicon and `huiyin lexicon`.

Revision ID: 0005
Revises: 0004
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "lexicon_words",
        sa.Column("word", sa.String(64), primary_key=True),
        sa.Column("pinyin", sa.String(400), nullable=False),
        sa.Column("updated", sa.Float(), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("lexicon_words")
