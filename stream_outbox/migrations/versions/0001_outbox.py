"""Outbox, channel map and audit tables, with the NOTIFY trigger.

Revision ID: 0001
Revises:
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

_JSON = sa.JSON().with_variant(JSONB(), "postgresql")
_BIGINT = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
_NOW = sa.func.now()
_TS = sa.DateTime(timezone=True)

_NOTIFY_FUNCTION = """
CREATE OR REPLACE FUNCTION stream_outbox_notify() RETURNS trigger AS $$
BEGIN
    PERFORM pg_notify('stream_outbox', '');
    RETURN NULL;
END;
$$ LANGUAGE plpgsql
"""
_NOTIFY_TRIGGER = """
CREATE TRIGGER stream_outbox_notify AFTER INSERT OR UPDATE OF status ON stream_outbox
FOR EACH STATEMENT EXECUTE FUNCTION stream_outbox_notify()
"""


def upgrade() -> None:
    op.create_table(
        "stream_outbox",
        sa.Column("id", _BIGINT, primary_key=True),
        sa.Column("target_kind", sa.String(32), nullable=False),
        sa.Column("target_id", sa.String(255), nullable=False),
        sa.Column("event", sa.String(32), nullable=False),
        sa.Column("payload", _JSON, nullable=False, server_default=sa.text("'{}'")),
        sa.Column("status", sa.String(16), nullable=False, server_default="pending"),
        sa.Column("attempts", sa.Integer, nullable=False, server_default=sa.text("0")),
        sa.Column("available_at", _TS, nullable=False, server_default=_NOW),
        sa.Column("dispatched_at", _TS),
        sa.Column("last_error", sa.Text),
        sa.Column("created_at", _TS, nullable=False, server_default=_NOW),
        sa.Column("updated_at", _TS, nullable=False, server_default=_NOW),
        sa.CheckConstraint(
            "status IN ('pending', 'dispatched', 'done', 'failed')",
            name="ck_stream_outbox_status",
        ),
        sa.CheckConstraint(
            "target_kind IN ('user', 'conversation', 'message')",
            name="ck_stream_outbox_target_kind",
        ),
        sa.PrimaryKeyConstraint("id", name="pk_stream_outbox"),
    )
    pending = sa.text("status = 'pending'")
    op.create_index(
        "ix_stream_outbox_pending",
        "stream_outbox",
        ["available_at", "id"],
        postgresql_where=pending,
        sqlite_where=pending,
    )
    dispatched = sa.text("status = 'dispatched'")
    op.create_index(
        "ix_stream_outbox_dispatched",
        "stream_outbox",
        ["dispatched_at"],
        postgresql_where=dispatched,
        sqlite_where=dispatched,
    )
    failed = sa.text("status = 'failed'")
    op.create_index(
        "ix_stream_outbox_failed",
        "stream_outbox",
        ["updated_at"],
        postgresql_where=failed,
        sqlite_where=failed,
    )
    op.create_index("ix_stream_outbox_target", "stream_outbox", ["target_kind", "target_id"])

    op.create_table(
        "stream_outbox_channel",
        sa.Column("conversation_id", sa.String(255), nullable=False),
        sa.Column("channel_type", sa.String(64), nullable=False),
        sa.Column("channel_id", sa.String(64), nullable=False),
        sa.Column("created_at", _TS, nullable=False, server_default=_NOW),
        sa.PrimaryKeyConstraint("conversation_id", name="pk_stream_outbox_channel"),
        sa.UniqueConstraint(
            "channel_type", "channel_id", name="uq_stream_outbox_channel_channel_type_channel_id"
        ),
    )
    op.create_table(
        "stream_outbox_audit",
        sa.Column("id", _BIGINT, primary_key=True),
        sa.Column("at", _TS, nullable=False, server_default=_NOW),
        sa.Column("actor", sa.String(255), nullable=False),
        sa.Column("action", sa.String(64), nullable=False),
        sa.Column("row_count", sa.Integer, nullable=False, server_default=sa.text("0")),
        sa.Column("detail", _JSON, nullable=False, server_default=sa.text("'{}'")),
        sa.PrimaryKeyConstraint("id", name="pk_stream_outbox_audit"),
    )
    if op.get_bind().dialect.name == "postgresql":
        op.execute(_NOTIFY_FUNCTION)
        op.execute(_NOTIFY_TRIGGER)


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP TRIGGER IF EXISTS stream_outbox_notify ON stream_outbox")
        op.execute("DROP FUNCTION IF EXISTS stream_outbox_notify()")
    op.drop_table("stream_outbox_audit")
    op.drop_table("stream_outbox_channel")
    op.drop_table("stream_outbox")
