"""The outbox tables, as SQLAlchemy Core tables on a metadata of their own.

The application's models never reference these tables; the migrations in
``migrations/`` create them (with the NOTIFY trigger) beside the app's schema.
"""

from __future__ import annotations

from enum import StrEnum

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    CheckConstraint,
    Column,
    Connection,
    DateTime,
    Index,
    Integer,
    MetaData,
    SmallInteger,
    String,
    Table,
    Text,
    UniqueConstraint,
    false,
    func,
    inspect,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.exc import DBAPIError

__all__ = [
    "EXPORT_ACTION",
    "NOTIFY_CHANNEL",
    "PRIORITY_ON_DEMAND",
    "SCHEMA_REVISION",
    "VERSION_TABLE",
    "BornIn",
    "InboxStatus",
    "Status",
    "TargetKind",
    "audit",
    "channel_map",
    "failed_per_cause",
    "inbox",
    "message_map",
    "metadata",
    "older_than_code",
    "outbox",
    "schema_revision",
    "settled_per_minute",
]

NOTIFY_CHANNEL = "stream_outbox"
# The priority of a row an app asked to go first (on-demand migration); the backlog's is 0
PRIORITY_ON_DEMAND = 1
# The audit action of a history export: its entry is the cut-over to Stream's import
EXPORT_ACTION = "history_export"


class Status(StrEnum):
    """Life of an outbox row: pending -> dispatched -> done | failed."""

    PENDING = "pending"
    DISPATCHED = "dispatched"
    DONE = "done"
    FAILED = "failed"


class BornIn(StrEnum):
    """Where a message was first written: the app's database or Stream (a client)."""

    STREAM = "stream"
    APP = "app"


class InboxStatus(StrEnum):
    """Life of an inbox row (an event Stream sent): pending -> done | ignored | failed."""

    PENDING = "pending"
    DONE = "done"
    FAILED = "failed"
    IGNORED = "ignored"


class TargetKind(StrEnum):
    """What an outbox row asks to reconcile."""

    USER = "user"
    CONVERSATION = "conversation"
    MESSAGE = "message"


metadata = MetaData(
    naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_N_name)s",
        "uq": "uq_%(table_name)s_%(column_0_N_name)s",
        "ck": "ck_%(table_name)s_%(constraint_name)s",
        "pk": "pk_%(table_name)s",
    }
)

_JSON = JSON().with_variant(JSONB(), "postgresql")


def _in(values: type[StrEnum]) -> str:
    return ", ".join(f"'{value}'" for value in values)


outbox = Table(
    "stream_outbox",
    metadata,
    Column("id", BigInteger().with_variant(Integer(), "sqlite"), primary_key=True),
    Column("target_kind", String(32), nullable=False),
    Column("target_id", String(255), nullable=False),
    Column("event", String(32), nullable=False),
    Column("payload", _JSON, nullable=False, server_default=text("'{}'")),
    Column("status", String(16), nullable=False, server_default=Status.PENDING.value),
    Column("attempts", Integer, nullable=False, server_default=text("0")),
    Column("available_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("dispatched_at", DateTime(timezone=True)),
    Column("last_error", Text),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("updated_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("priority", SmallInteger, nullable=False, server_default=text("0")),
    # The writing transaction (txid_current()) of a row the capture triggers wrote: their
    # rows coalesce to one per target per transaction on it (``app_hooks.trigger_sql``).
    Column("capture_tx", BigInteger),
    # A failed row's cause (``worker.error_groups``), stored when it fails.
    Column("cause_key", String(12)),
    CheckConstraint(f"status IN ({_in(Status)})", name="status"),
    CheckConstraint(f"target_kind IN ({_in(TargetKind)})", name="target_kind"),
    # Claims read only pending rows: a partial index stays small however many
    # done rows the table keeps.
    Index(
        "ix_stream_outbox_pending",
        "available_at",
        "id",
        postgresql_where=text("status = 'pending'"),
        sqlite_where=text("status = 'pending'"),
    ),
    # Rows the app asked to go first: the relay claims them before the backlog. Rows of
    # priority 0 (every row capture writes) fall outside it, so it costs them nothing.
    Index(
        "ix_stream_outbox_priority",
        "available_at",
        "id",
        postgresql_where=text("status = 'pending' AND priority > 0"),
        sqlite_where=text("status = 'pending' AND priority > 0"),
    ),
    # The triggers' pending-row key; the listeners' rows (capture_tx NULL) add no entry.
    Index(
        "uq_stream_outbox_capture",
        "target_kind",
        "target_id",
        "capture_tx",
        unique=True,
        postgresql_where=text("status = 'pending' AND capture_tx IS NOT NULL"),
        sqlite_where=text("status = 'pending' AND capture_tx IS NOT NULL"),
    ),
    Index(
        "ix_stream_outbox_dispatched",
        "dispatched_at",
        postgresql_where=text("status = 'dispatched'"),
        sqlite_where=text("status = 'dispatched'"),
    ),
    Index(
        "ix_stream_outbox_failed",
        "updated_at",
        postgresql_where=text("status = 'failed'"),
        sqlite_where=text("status = 'failed'"),
    ),
    # Error groups counted from the failed rows alone (no entry for any other row).
    Index(
        "ix_stream_outbox_cause",
        "cause_key",
        "target_kind",
        "updated_at",
        "id",
        postgresql_where=text("status = 'failed'"),
        sqlite_where=text("status = 'failed'"),
    ),
    # Failed rows without a cause key (an older worker's): none once every worker is new.
    Index(
        "ix_stream_outbox_unkeyed",
        "id",
        postgresql_where=text("status = 'failed' AND cause_key IS NULL"),
        sqlite_where=text("status = 'failed' AND cause_key IS NULL"),
    ),
    Index("ix_stream_outbox_target", "target_kind", "target_id"),
    # No index on created_at: ids grow with time, so age scans (purge) walk the
    # primary key, and every index costs each app transaction that writes a row.
)

# Alembic's version table of the outbox's migrations (the app's own keeps its name), and
# the migration these tables are at (the head of migrations/versions: a test holds them).
VERSION_TABLE = "stream_outbox_alembic_version"
SCHEMA_REVISION = "0010"

# Rows settled per minute by status (done, failed) and target kind, written by the statement
# that settles them, in a few shards a minute (workers settling at once take different
# rows); with the earliest creation among them, for the lag series. Pruned with the done
# rows (``worker.store.rollups``).
settled_per_minute = Table(
    "stream_outbox_settled",
    metadata,
    Column("minute", DateTime(timezone=True), primary_key=True),
    Column("status", String(16), primary_key=True),
    Column("target_kind", String(32), primary_key=True),
    Column("shard", SmallInteger, primary_key=True),
    Column("rows", BigInteger, nullable=False),
    Column("first_created", DateTime(timezone=True), nullable=False),
    # The minutes whose shards are not merged yet (the relay merges closed minutes' into
    # shard 0 now and then: a week's history stays a row per minute, status and kind)
    Index(
        "ix_stream_outbox_settled_sharded",
        "minute",
        postgresql_where=text("shard <> 0"),
        sqlite_where=text("shard <> 0"),
    ),
)

# Failed rows counted per cause key and target kind, kept by the database's own triggers
# on the outbox (migration 0010) wherever a row becomes failed or stops being failed: a
# worker failing it, a replay, a success after all, a deletion, or a hand-written
# statement. The error groups and the failed counts read these few rows instead of
# counting the failed rows. Sharded by backend like the rollups; a shard may go below
# zero (a replay subtracts in its own shard), the sum per cause and kind is the count.
failed_per_cause = Table(
    "stream_outbox_failed",
    metadata,
    Column("cause_key", String(12), primary_key=True),
    Column("target_kind", String(32), primary_key=True),
    Column("shard", SmallInteger, primary_key=True),
    Column("rows", BigInteger, nullable=False),
)

channel_map = Table(
    "stream_outbox_channel",
    metadata,
    Column("conversation_id", String(255), primary_key=True),
    Column("channel_type", String(64), nullable=False),
    Column("channel_id", String(64), nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    # History copy cursor: the last message copied into the channel, in (time, id) order.
    Column("history_until", DateTime(timezone=True)),
    Column("history_message_id", String(255)),
    # The channel is deleted in Stream (the conversation left the database) since this
    # time; its generation counts its creations after such a deletion (message ids), and
    # history_copying says its messages are being sent again (live ones wait for it).
    Column("deleted_at", DateTime(timezone=True)),
    Column("generation", Integer, nullable=False, server_default=text("0")),
    Column("history_copying", Boolean, nullable=False, server_default=false()),
    # Since when the channel is in Stream (created by the live path, or by the import
    # of the export that carries it); None: an id assigned, no channel yet.
    Column("in_stream_at", DateTime(timezone=True)),
    # The history export (its audit entry) whose files carry the channel, if any.
    Column("exported_in", BigInteger),
    UniqueConstraint("channel_type", "channel_id"),
)

# A message's two ids: the app's (as text) and Stream's. Messages born in the app keep
# their deterministic ``msg-{id}`` and need no row; one born in Stream keeps Stream's id,
# recorded here when it is written into the app's table. ``updated_at``: the time of the
# last edit applied, either side (the later wins); ``deleted_at``: deleted on either
# side (a deletion wins over any edit).
message_map = Table(
    "stream_outbox_message_map",
    metadata,
    Column("message_id", Text, primary_key=True),
    Column("stream_id", Text, nullable=False, unique=True),
    Column("born_in", Text, nullable=False),
    Column("updated_at", DateTime(timezone=True)),
    Column("deleted_at", DateTime(timezone=True)),
    CheckConstraint(f"born_in IN ({_in(BornIn)})", name="born_in"),
)

audit = Table(
    "stream_outbox_audit",
    metadata,
    Column("id", BigInteger().with_variant(Integer(), "sqlite"), primary_key=True),
    Column("at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("actor", String(255), nullable=False),
    Column("action", String(64), nullable=False),
    Column("row_count", Integer, nullable=False, server_default=text("0")),
    Column("detail", _JSON, nullable=False, server_default=text("'{}'")),
)

# The inbound side's mirror of the outbox: each event Stream sent (a webhook, or one
# `inbound sync` found in Stream's state), applied to the app's tables by the runner.
inbox = Table(
    "stream_outbox_inbox",
    metadata,
    Column("id", BigInteger().with_variant(Integer(), "sqlite"), primary_key=True),
    # Stream's X-Webhook-Id (the same across its retries); a catch-up's sync:{id}:{time}
    Column("webhook_id", Text, unique=True),
    Column("event_type", Text, nullable=False),
    Column("cid", Text),
    Column("message_id", Text),
    Column("user_id", Text),
    Column("event_at", DateTime(timezone=True)),
    Column("payload", _JSON, nullable=False),
    Column("status", Text, nullable=False, server_default=InboxStatus.PENDING.value),
    Column("attempts", Integer, nullable=False, server_default=text("0")),
    Column("last_error", Text),
    Column("received_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("settled_at", DateTime(timezone=True)),
    CheckConstraint(f"status IN ({_in(InboxStatus)})", name="status"),
    Index(
        "ix_stream_outbox_inbox_pending",
        "id",
        postgresql_where=text("status = 'pending'"),
        sqlite_where=text("status = 'pending'"),
    ),
)


def schema_revision(conn: Connection) -> str | None:
    """The migration the outbox's tables are at; None when that cannot be known (made
    without Alembic, or a role not granted the version table: nothing is refused then).

    Run it last on ``conn``: a refused read leaves PostgreSQL's transaction aborted.
    """
    if not inspect(conn).has_table(VERSION_TABLE):
        return None
    try:
        found: str | None = conn.scalar(text(f"SELECT version_num FROM {VERSION_TABLE}"))
    except DBAPIError:  # permission denied: the owner migrated, this role only writes rows
        return None
    return found


def older_than_code(revision: str | None) -> bool:
    """Whether the outbox at ``revision`` is older than this version's tables (the
    migrations are numbered; an unknown or newer revision is not older)."""
    if revision is None or not revision.isdigit():
        return False
    return int(revision) < int(SCHEMA_REVISION)
