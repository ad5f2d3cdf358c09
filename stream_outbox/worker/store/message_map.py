"""A message's two ids: the app's and Stream's (the ``stream_outbox_message_map`` table).

A message born in the app is ``msg-{id}`` in Stream (``msg{generation}-{id}`` in a
channel made again: :func:`~stream_outbox.app_hooks.desired.stream_message_id`) and has
a row here only once an edit of it is applied or sent (``born_in = 'app'``: the time of
its last edit, either side, for the conflict rule); one born in Stream (sent by a
client) keeps Stream's id, recorded when the inbound side writes it into the app's
table. The worker reads and writes these rows here only: the inbound applier, the
message sync (edits and deletions to the right id, a Stream-born row never sent again,
the time of each edit sent) and verify (Stream-born messages expected under their own
ids).
"""

from __future__ import annotations

import re
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Text, cast, exists, func, select, text, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.sql.elements import ColumnElement

from stream_outbox.app_hooks.desired import stream_message_id
from stream_outbox.app_hooks.outbox import BornIn, message_map

__all__ = [
    "MapEntry",
    "app_born_id",
    "entries_for_stream_ids",
    "entry_for",
    "entry_for_stream_id",
    "hold",
    "hold_all",
    "mark_deleted",
    "not_born_in_stream",
    "record",
    "record_edit",
    "stream_id_of",
    "stream_ids",
    "undelete",
]

# The ids the mirror gives the app's messages in Stream: msg-{id}, msg{generation}-{id}
_APP_BORN = re.compile(r"^msg(?:[1-9][0-9]*)?-(.+)$", re.DOTALL)


@dataclass(frozen=True)
class MapEntry:
    """One message's row: its two ids, where it was born, its last edit and deletion."""

    message_id: str
    stream_id: str
    born_in: str
    updated_at: datetime | None
    deleted_at: datetime | None

    @property
    def born_in_stream(self) -> bool:
        """Whether a client wrote it first (the app's row came from Stream)."""
        return self.born_in == BornIn.STREAM.value


def app_born_id(stream_id: str) -> str | None:
    """The app's message id inside an id the mirror gave (``msg-{id}``/``msg{N}-{id}``),
    or ``None`` for an id Stream or a client chose."""
    found = _APP_BORN.match(stream_id)
    return found.group(1) if found else None


def _entry(row: Any) -> MapEntry:
    return MapEntry(row.message_id, row.stream_id, row.born_in, row.updated_at, row.deleted_at)


def entry_for(conn: Connection, message_id: str) -> MapEntry | None:
    """The row of the app's message ``message_id``, if it has one."""
    row = conn.execute(select(message_map).where(message_map.c.message_id == message_id)).first()
    return None if row is None else _entry(row)


def entry_for_stream_id(conn: Connection, stream_id: str, *, lock: bool = False) -> MapEntry | None:
    """The row of Stream's message ``stream_id``, if it has one (``lock``: held until the
    transaction ends, so two deliveries of one message apply one at a time)."""
    query = select(message_map).where(message_map.c.stream_id == stream_id)
    row = conn.execute(query.with_for_update() if lock else query).first()
    return None if row is None else _entry(row)


def hold_all(conn: Connection, stream_ids: Collection[str]) -> None:
    """Hold Stream's messages ``stream_ids`` until the transaction ends, as the inbound
    applier holds one (``pg_advisory_xact_lock(hashtext(id))``), in one statement and in
    the order of their keys (two holders of several wait rather than deadlock)."""
    if stream_ids:
        conn.execute(_HOLD_ALL, {"ids": sorted(set(stream_ids))})


_HOLD_ALL = text(
    "SELECT count(pg_advisory_xact_lock(k)) FROM "
    "(SELECT DISTINCT hashtext(i) AS k FROM unnest(CAST(:ids AS text[])) AS i ORDER BY k) AS held"
)


def entries_for_stream_ids(conn: Connection, stream_ids: Collection[str]) -> dict[str, MapEntry]:
    """The rows of those of Stream's messages ``stream_ids`` that have one, by Stream id."""
    if not stream_ids:
        return {}
    query = select(message_map).where(message_map.c.stream_id.in_(list(stream_ids)))
    return {row.stream_id: _entry(row) for row in conn.execute(query)}


def stream_ids(conn: Connection, message_ids: Collection[str]) -> dict[str, str]:
    """Stream's ids of those of the app's messages born in Stream (others are absent)."""
    if not message_ids:
        return {}
    query = select(message_map.c.message_id, message_map.c.stream_id).where(
        message_map.c.message_id.in_(list(message_ids)),
        message_map.c.born_in == BornIn.STREAM.value,
    )
    return {row.message_id: row.stream_id for row in conn.execute(query)}


def not_born_in_stream(key: Any) -> ColumnElement[bool]:
    """SQL: the app's message whose id is ``key`` (its id column) was not born in Stream
    (for queries that give every other message the deterministic id)."""
    born = exists().where(
        message_map.c.message_id == cast(key, Text),
        message_map.c.born_in == BornIn.STREAM.value,
    )
    return ~born


def stream_id_of(message_id: str, generation: int, mapped: Mapping[str, str]) -> str:
    """A message's id in Stream: the one ``mapped`` records (born in Stream), else the
    deterministic id of its channel's ``generation``."""
    return mapped.get(message_id) or stream_message_id(message_id, generation)


def record(
    conn: Connection,
    message_id: str,
    stream_id: str,
    *,
    updated_at: datetime | None = None,
    deleted_at: datetime | None = None,
) -> bool:
    """Record a message born in Stream, once; whether this call recorded it."""
    values = {"message_id": message_id, "stream_id": stream_id, "born_in": BornIn.STREAM.value}
    found = conn.execute(_RECORD, {**values, "updated_at": updated_at, "deleted_at": deleted_at})
    return bool(found.rowcount)


# Built once: the inbound applier records each message a client sends
_RECORD = insert(message_map).on_conflict_do_nothing()


def record_edit(
    conn: Connection, message_id: str, stream_id: str, at: datetime | None = None
) -> None:
    """The message's last edit, applied from Stream or sent to it, is at ``at`` (default:
    now) unless a later one is recorded: the later edit wins (:func:`~stream_outbox.
    worker.inbound.events.edit_applies`). A message born in the app gets its row here
    (``born_in = 'app'``, under its Stream id ``stream_id``)."""
    statement = insert(message_map).values(
        message_id=message_id,
        stream_id=stream_id,
        born_in=BornIn.APP.value,
        updated_at=func.now() if at is None else at,
    )
    later = func.greatest(message_map.c.updated_at, statement.excluded.updated_at)
    conn.execute(
        statement.on_conflict_do_update(index_elements=["message_id"], set_={"updated_at": later})
    )


def hold(conn: Connection, stream_id: str) -> None:
    """Hold Stream's message ``stream_id`` until the transaction ends: the inbound side's
    applying of its events and the worker's recording of an edit it sent go one at a
    time (a row lock would need the row, which a message born in the app may not have)."""
    conn.execute(text("SELECT pg_advisory_xact_lock(hashtext(:id))"), {"id": stream_id})


def mark_deleted(conn: Connection, message_id: str) -> None:
    """The message is deleted (either side): later edits from either side are ignored."""
    conn.execute(
        update(message_map)
        .where(message_map.c.message_id == message_id, message_map.c.deleted_at.is_(None))
        .values(deleted_at=func.now())
    )


def undelete(conn: Connection, message_id: str) -> None:
    """The message is live again (a soft delete undone in the app)."""
    conn.execute(
        update(message_map)
        .where(message_map.c.message_id == message_id, message_map.c.deleted_at.is_not(None))
        .values(deleted_at=None)
    )
