"""History import cursor on the channel map: the last message copied into the channel.

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
    op.add_column("stream_outbox_channel", sa.Column("history_until", sa.DateTime(timezone=True)))
    op.add_column("stream_outbox_channel", sa.Column("history_message_id", sa.String(255)))


def downgrade() -> None:
    op.drop_column("stream_outbox_channel", "history_message_id")
    op.drop_column("stream_outbox_channel", "history_until")
