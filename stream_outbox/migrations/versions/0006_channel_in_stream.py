"""The channel map tells an assigned channel id from a channel created in Stream
(``in_stream_at``), and names the history export whose files carry the channel
(``exported_in``, its audit entry): such a channel is in Stream once that import is
complete.

Rows made before this migration were made by the live path, which assigns an id just
before it creates the channel: they are taken as in Stream since they were assigned.

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


def upgrade() -> None:
    op.add_column("stream_outbox_channel", sa.Column("in_stream_at", sa.DateTime(timezone=True)))
    op.add_column("stream_outbox_channel", sa.Column("exported_in", sa.BigInteger))
    op.execute("UPDATE stream_outbox_channel SET in_stream_at = created_at")


def downgrade() -> None:
    op.drop_column("stream_outbox_channel", "exported_in")
    op.drop_column("stream_outbox_channel", "in_stream_at")
