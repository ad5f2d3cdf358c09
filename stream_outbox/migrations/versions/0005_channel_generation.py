"""Channel generations: a conversation back in the database after Stream deleted its
channel gets the channel again, with its messages sent again (``history_copying``) under
ids of a new generation.

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
    # A constant default and a nullable column: PostgreSQL adds both without a rewrite.
    op.add_column("stream_outbox_channel", sa.Column("deleted_at", sa.DateTime(timezone=True)))
    op.add_column(
        "stream_outbox_channel",
        sa.Column("generation", sa.Integer, nullable=False, server_default=sa.text("0")),
    )
    op.add_column(
        "stream_outbox_channel",
        sa.Column("history_copying", sa.Boolean, nullable=False, server_default=sa.false()),
    )


def downgrade() -> None:
    op.drop_column("stream_outbox_channel", "history_copying")
    op.drop_column("stream_outbox_channel", "generation")
    op.drop_column("stream_outbox_channel", "deleted_at")
