"""The inbox: each event Stream sends (a webhook, or one ``inbound sync`` found in Stream's
state), stored as it arrives and applied to the app's tables by the inbound runner.

``webhook_id`` is unique: a webhook Stream retries (the same ``X-Webhook-Id``) is stored
once. Pending rows are claimed in id order through a partial index.

Revision ID: 0008
Revises: 0007
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

_JSON = sa.JSON().with_variant(JSONB(), "postgresql")
_BIGINT = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
_TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "stream_outbox_inbox",
        sa.Column("id", _BIGINT, primary_key=True),
        sa.Column("webhook_id", sa.Text),
        sa.Column("event_type", sa.Text, nullable=False),
        sa.Column("cid", sa.Text),
        sa.Column("message_id", sa.Text),
        sa.Column("user_id", sa.Text),
        sa.Column("event_at", _TS),
        sa.Column("payload", _JSON, nullable=False),
        sa.Column("status", sa.Text, nullable=False, server_default="pending"),
        sa.Column("attempts", sa.Integer, nullable=False, server_default=sa.text("0")),
        sa.Column("last_error", sa.Text),
        sa.Column("received_at", _TS, nullable=False, server_default=sa.func.now()),
        sa.Column("settled_at", _TS),
        sa.CheckConstraint(
            "status IN ('pending', 'done', 'failed', 'ignored')",
            name="ck_stream_outbox_inbox_status",
        ),
        sa.PrimaryKeyConstraint("id", name="pk_stream_outbox_inbox"),
        sa.UniqueConstraint("webhook_id", name="uq_stream_outbox_inbox_webhook_id"),
    )
    pending = sa.text("status = 'pending'")
    op.create_index(
        "ix_stream_outbox_inbox_pending",
        "stream_outbox_inbox",
        ["id"],
        postgresql_where=pending,
        sqlite_where=pending,
    )


def downgrade() -> None:
    op.drop_table("stream_outbox_inbox")
