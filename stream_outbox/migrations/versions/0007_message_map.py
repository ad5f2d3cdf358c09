"""A message's two ids: the app's and Stream's, for messages born in Stream (sent by a
client), so that their later edits and deletions, from either side, go to the right id
and their rows are never sent to Stream again.

Revision ID: 0007
Revises: 0006
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

TABLE = "stream_outbox_message_map"


def upgrade() -> None:
    op.create_table(
        TABLE,
        sa.Column("message_id", sa.Text, nullable=False),
        sa.Column("stream_id", sa.Text, nullable=False),
        sa.Column("born_in", sa.Text, nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True)),
        sa.Column("deleted_at", sa.DateTime(timezone=True)),
        sa.PrimaryKeyConstraint("message_id", name=f"pk_{TABLE}"),
        sa.UniqueConstraint("stream_id", name=f"uq_{TABLE}_stream_id"),
        sa.CheckConstraint("born_in IN ('stream', 'app')", name=f"ck_{TABLE}_born_in"),
    )


def downgrade() -> None:
    op.drop_table(TABLE)
