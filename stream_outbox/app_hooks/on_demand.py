"""On-demand migration: a conversation Stream does not hold yet goes ahead of the backlog.

When a participant opens a conversation that has no channel yet (a legacy conversation
the backfill has not reached), the app calls :func:`request_migration` on its own
connection: it writes one *priority* outbox row in the caller's transaction (it never
commits). The relay claims priority rows before any other and sends them to a Dramatiq
queue of their own, which the workers serve first. :func:`migration_status` says where
the conversation stands, with the channel it has or the one it will get.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from enum import StrEnum
from typing import Any

from sqlalchemy import Connection, func, insert, or_, select

from stream_outbox.app_hooks import reads
from stream_outbox.app_hooks.binding import Binding
from stream_outbox.app_hooks.default_binding import binding_or_reference
from stream_outbox.app_hooks.lookup import (
    OPEN_STATUSES,
    MappedChannel,
    legacy_by_open_rows,
    mapped_channel,
    predicted_channel_id,
)
from stream_outbox.app_hooks.outbox import (
    PRIORITY_ON_DEMAND,
    Status,
    TargetKind,
    outbox,
)

__all__ = ["MIGRATE_EVENT", "Migration", "MigrationState", "migration_status", "request_migration"]

MIGRATE_EVENT = "migrate"


class MigrationState(StrEnum):
    """Where an on-demand migration stands."""

    SYNCED = "synced"  # Stream holds the channel and the last priority row (if any) is done
    PENDING = "pending"  # a priority row is open: the channel is coming
    PENDING_IMPORT = "pending_import"  # a Stream import still to complete brings it
    FAILED = "failed"  # the last priority row failed (a new request tries again)
    NOT_REQUESTED = "not_requested"  # no channel yet, and nobody asked for one


@dataclass(frozen=True)
class Migration:
    """A conversation's channel (assigned, or as the naming rules predict it) and its state."""

    conversation_id: str
    channel_type: str
    channel_id: str
    state: MigrationState
    error: str | None = None

    @property
    def cid(self) -> str:
        """Stream's ``type:id``."""
        return f"{self.channel_type}:{self.channel_id}"

    @property
    def synced(self) -> bool:
        """The channel is in Stream: the app can open it."""
        return self.state is MigrationState.SYNCED


@dataclass(frozen=True)
class _Rows:
    """The conversation's outbox rows that matter here."""

    open_payloads: list[dict[str, Any]]
    last_priority_status: str | None
    last_priority_error: str | None

    @property
    def legacy(self) -> bool:
        """Whether the worker will take the conversation as legacy: as its open rows say
        (a backfill's row does), or, with none open, as one that existed before go-live
        (capture has written nothing for it since)."""
        return legacy_by_open_rows(self.open_payloads)

    def history(self, default: bool) -> bool:
        """Whether the history goes with it: as the backfill's rows ask, else ``default``."""
        legacy = [p for p in self.open_payloads if p.get("legacy")]
        return any(p.get("history") for p in legacy) if legacy else default


def migration_status(
    conn: Connection, conversation_id: str, binding: Binding | None = None
) -> Migration | None:
    """The conversation's channel and migration state; None when there is no such
    conversation. Reads only."""
    return _status(conn, conversation_id, binding_or_reference(binding))[0]


def _status(
    conn: Connection, conversation_id: str, binding: Binding
) -> tuple[Migration | None, _Rows]:
    rows = _read_rows(conn, conversation_id)
    desired = reads.desired_channels(binding, conn, [conversation_id], legacy=rows.legacy).get(
        conversation_id
    )
    if desired is None:
        return None, rows
    mapped = mapped_channel(conn, conversation_id)
    # A channel deleted in Stream (the conversation is back: a soft delete undone) is not
    # synced until it is created again: a request moves that ahead of the backlog. One
    # only assigned is not synced either; a pending import brings it (nothing to ask).
    state, error = _state(rows, mapped)
    if mapped is not None:
        found = Migration(conversation_id, mapped.channel_type, mapped.channel_id, state, error)
        return found, rows
    channel_id = predicted_channel_id(conn, desired)
    if channel_id is None:
        return None, rows  # no id Stream would take: there is no channel to open
    return Migration(conversation_id, desired.channel_type, channel_id, state, error), rows


def request_migration(
    conn: Connection, conversation_id: str, binding: Binding | None = None, *, history: bool = True
) -> Migration | None:
    """Ask for the conversation to be synced ahead of the backlog; None when there is no
    such conversation.

    Writes a priority outbox row on ``conn``, in the caller's transaction (commit it),
    unless the conversation is synced already or a priority row of it is open: repeated
    requests add nothing. ``history``: import the messages of a legacy conversation too
    (a backfill's row of the conversation, if one is open, decides instead).
    """
    if conn.dialect.name == "postgresql":  # concurrent requests: one row, not two
        key = f"stream_outbox:migrate:{conversation_id}"
        conn.execute(select(func.pg_advisory_xact_lock(func.hashtextextended(key, 0))))
    status, rows = _status(conn, conversation_id, binding_or_reference(binding))
    if status is None or status.state in _NOTHING_TO_ASK:
        return status
    payload = {"legacy": True, "history": rows.history(history)} if rows.legacy else {}
    conn.execute(
        insert(outbox).values(
            target_kind=TargetKind.CONVERSATION.value,
            target_id=conversation_id,
            event=MIGRATE_EVENT,
            payload=payload,
            priority=PRIORITY_ON_DEMAND,
        )
    )
    return replace(status, state=MigrationState.PENDING, error=None)


_NOTHING_TO_ASK = (MigrationState.SYNCED, MigrationState.PENDING, MigrationState.PENDING_IMPORT)


def _read_rows(conn: Connection, conversation_id: str) -> _Rows:
    """Open rows, and priority rows of any status (few per conversation), newest last."""
    query = (
        select(outbox.c.status, outbox.c.priority, outbox.c.payload, outbox.c.last_error)
        .where(
            outbox.c.target_kind == TargetKind.CONVERSATION.value,
            outbox.c.target_id == conversation_id,
            or_(outbox.c.status.in_(OPEN_STATUSES), outbox.c.priority > 0),
        )
        .order_by(outbox.c.id)
    )
    open_payloads: list[dict[str, Any]] = []
    last: tuple[str | None, str | None] = (None, None)
    for row in conn.execute(query):
        if row.status in OPEN_STATUSES:
            open_payloads.append(row.payload if isinstance(row.payload, dict) else {})
        if row.priority > 0:
            last = (row.status, row.last_error)
    return _Rows(open_payloads, *last)


def _state(rows: _Rows, mapped: MappedChannel | None) -> tuple[MigrationState, str | None]:
    """Pending import while a Stream import still to complete carries the channel;
    pending while the last priority row is open; failed when it failed (its channel id
    may be assigned, the channel need not exist); else synced once Stream holds it."""
    if mapped is not None and mapped.pending_import:
        return MigrationState.PENDING_IMPORT, None
    if rows.last_priority_status in OPEN_STATUSES:
        return MigrationState.PENDING, None
    if rows.last_priority_status == Status.FAILED:
        return MigrationState.FAILED, rows.last_priority_error
    if mapped is not None and mapped.in_stream:
        return MigrationState.SYNCED, None
    return MigrationState.NOT_REQUESTED, None
