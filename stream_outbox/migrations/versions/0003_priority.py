"""Priority of outbox rows (on-demand migration), with a partial index of pending priority rows.

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

_PENDING_PRIORITY = sa.text("status = 'pending' AND priority > 0")


def upgrade() -> None:
    # A constant default: PostgreSQL adds the column without rewriting the table.
    op.add_column(
        "stream_outbox",
        sa.Column("priority", sa.SmallInteger, nullable=False, server_default=sa.text("0")),
    )
    # Partial: the rows capture writes (priority 0) add no entry to it.
    op.create_index(
        "ix_stream_outbox_priority",
        "stream_outbox",
        ["available_at", "id"],
        postgresql_where=_PENDING_PRIORITY,
        sqlite_where=_PENDING_PRIORITY,
    )


def downgrade() -> None:
    op.drop_index("ix_stream_outbox_priority", table_name="stream_outbox")
    op.drop_column("stream_outbox", "priority")
