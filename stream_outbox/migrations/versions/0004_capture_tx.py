"""Capture triggers' pending-row key: one pending row per target per writing transaction.

Revision ID: 0004
Revises: 0003
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

_PENDING_CAPTURED = sa.text("status = 'pending' AND capture_tx IS NOT NULL")
# The capture triggers NOTIFY once per transaction themselves: the outbox's statement
# trigger skips their inserts (nested in a trigger) instead of firing on each statement.
_NOTIFY_AT_TOP = """
CREATE TRIGGER stream_outbox_notify AFTER INSERT OR UPDATE OF status ON stream_outbox
FOR EACH STATEMENT WHEN (pg_trigger_depth() = 0) EXECUTE FUNCTION stream_outbox_notify()
"""
_NOTIFY_ALWAYS = """
CREATE TRIGGER stream_outbox_notify AFTER INSERT OR UPDATE OF status ON stream_outbox
FOR EACH STATEMENT EXECUTE FUNCTION stream_outbox_notify()
"""


def upgrade() -> None:
    # Nullable, no default: PostgreSQL adds it without rewriting the table.
    op.add_column("stream_outbox", sa.Column("capture_tx", sa.BigInteger))
    # Partial: only the triggers' rows, while pending (the listeners' rows add no entry).
    op.create_index(
        "uq_stream_outbox_capture",
        "stream_outbox",
        ["target_kind", "target_id", "capture_tx"],
        unique=True,
        postgresql_where=_PENDING_CAPTURED,
        sqlite_where=_PENDING_CAPTURED,
    )
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP TRIGGER stream_outbox_notify ON stream_outbox")
        op.execute(_NOTIFY_AT_TOP)


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP TRIGGER stream_outbox_notify ON stream_outbox")
        op.execute(_NOTIFY_ALWAYS)
    op.drop_index("uq_stream_outbox_capture", table_name="stream_outbox")
    op.drop_column("stream_outbox", "capture_tx")
