"""The channel map: which Stream channel each conversation has, and its history cursor.

A channel whose conversation left the database is marked deleted (before Stream is
asked to delete it); should the conversation come back (a soft delete undone),
:meth:`reopen_channel` makes it a new generation of the channel: Stream shows a
re-created channel empty and refuses the ids of the messages it held, so the messages
go again, under the new generation's ids, copied by a history row written in the same
transaction. Until that copy ends (:meth:`end_history_copy`), live messages it will
send wait for it, so that the channel keeps the database's order.

The worker reads and writes these rows here only; an :class:`OutboxRepository` holds one
as ``repo.channels``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from contextlib import suppress
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Engine, func, insert, select, text, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.sql.elements import ColumnElement

from stream_outbox.app_hooks.capture import write_changes
from stream_outbox.app_hooks.changes import Change, Target
from stream_outbox.app_hooks.outbox import channel_map
from stream_outbox.worker.errors import RetryableError

__all__ = ["ChannelMap", "ChannelRef", "StaleChannel"]


@dataclass(frozen=True)
class ChannelRef:
    """A Stream channel's type and id; from the map, also its generation (the ids of its
    messages), whether it is deleted, whether its messages are being copied again,
    whether Stream holds it (created, not just assigned) and the history export whose
    files carry it (none of these tells channels apart)."""

    channel_type: str
    channel_id: str
    generation: int = field(default=0, compare=False)
    deleted: bool = field(default=False, compare=False)
    copying: bool = field(default=False, compare=False)
    in_stream: bool = field(default=False, compare=False)
    exported_in: int | None = field(default=None, compare=False)


_REF_COLUMNS = (
    channel_map.c.channel_type,
    channel_map.c.channel_id,
    channel_map.c.generation,
    channel_map.c.deleted_at,
    channel_map.c.history_copying,
    channel_map.c.in_stream_at,
    channel_map.c.exported_in,
)


def _ref(row: Any) -> ChannelRef:
    return ChannelRef(
        row.channel_type,
        row.channel_id,
        row.generation,
        deleted=row.deleted_at is not None,
        copying=row.history_copying,
        in_stream=row.in_stream_at is not None,
        exported_in=row.exported_in,
    )


class ChannelMap:
    """Channel map reads and writes on ``engine``."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._postgres = engine.dialect.name == "postgresql"

    def channel_for(
        self, conversation_id: str, conn: Connection | None = None
    ) -> ChannelRef | None:
        """The channel assigned to a conversation, if any (on ``conn`` when given)."""
        query = select(*_REF_COLUMNS).where(channel_map.c.conversation_id == conversation_id)
        if conn is not None:
            row = conn.execute(query).first()
        else:
            with self.engine.connect() as own:
                row = own.execute(query).first()
        return None if row is None else _ref(row)

    def channels_for(
        self, conversation_ids: Sequence[str], conn: Connection
    ) -> dict[str, ChannelRef]:
        """The channels assigned to these conversations (those with none are absent)."""
        if not conversation_ids:
            return {}
        query = select(channel_map.c.conversation_id, *_REF_COLUMNS).where(
            channel_map.c.conversation_id.in_(list(conversation_ids))
        )
        return {row.conversation_id: _ref(row) for row in conn.execute(query)}

    def mark_channel_deleted(self, conversation_id: str, ref: ChannelRef) -> None:
        """Mark the conversation's channel ``ref`` deleted, before Stream is asked to
        delete it: whatever happens to the call, a return makes a new generation."""
        statement = (
            update(channel_map)
            .where(
                channel_map.c.conversation_id == conversation_id,
                channel_map.c.channel_type == ref.channel_type,
                channel_map.c.channel_id == ref.channel_id,
                channel_map.c.deleted_at.is_(None),
            )
            .values(deleted_at=func.now())
        )
        with self.engine.begin() as conn:
            conn.execute(statement)

    def mark_in_stream(
        self, conversation_id: str, *, copy_history: bool = False, write_row: bool = False
    ) -> None:
        """Stream holds the conversation's channel now (created, or found there). With
        ``copy_history``, in the same transaction, its messages are copied into it from the
        first (a channel created after a history export that did not carry it): live
        messages wait for the copy; with ``write_row``, the history row goes with it."""
        values: dict[str, Any] = {"in_stream_at": func.now()}
        if copy_history:
            values.update(history_copying=True, history_until=None, history_message_id=None)
        statement = (
            update(channel_map)
            .where(
                channel_map.c.conversation_id == conversation_id,
                channel_map.c.in_stream_at.is_(None),
            )
            .values(**values)
        )
        with self.engine.begin() as conn:
            marked = conn.execute(statement).rowcount
            if marked and write_row:
                target = Target("conversation", conversation_id)
                write_changes(conn, [Change(target, "history", {"history": True})])

    def mark_in_stream_many(self, conversation_ids: Sequence[str]) -> None:
        """:meth:`mark_in_stream` for many conversations, in one statement."""
        if not conversation_ids:
            return
        statement = (
            update(channel_map)
            .where(
                channel_map.c.conversation_id.in_(list(conversation_ids)),
                channel_map.c.in_stream_at.is_(None),
            )
            .values(in_stream_at=func.now())
        )
        with self.engine.begin() as conn:
            conn.execute(statement)

    def mark_exported(self, conversation_ids: Sequence[str], export_id: int) -> None:
        """The export ``export_id`` carries these conversations' channels."""
        if not conversation_ids:
            return
        statement = (
            update(channel_map)
            .where(channel_map.c.conversation_id.in_(list(conversation_ids)))
            .values(exported_in=export_id)
        )
        with self.engine.begin() as conn:
            conn.execute(statement)

    def unmark_exported(self, export_id: int) -> None:
        """No channel is carried by the export ``export_id`` (before a pass writes them)."""
        statement = (
            update(channel_map)
            .where(channel_map.c.exported_in == export_id)
            .values(exported_in=None)
        )
        with self.engine.begin() as conn:
            conn.execute(statement)

    @staticmethod
    def mark_imported(conn: Connection, export_id: int) -> int:
        """The export's import is complete: its channels are in Stream (in ``conn``'s
        transaction); returns how many were not before."""
        statement = (
            update(channel_map)
            .where(
                channel_map.c.exported_in == export_id,
                channel_map.c.in_stream_at.is_(None),
            )
            .values(in_stream_at=func.now())
        )
        return int(conn.execute(statement).rowcount or 0)

    def reopen_channel(self, conversation_id: str, copy: bool) -> ChannelRef | None:
        """Make a conversation's deleted channel its next generation, its history cursor
        cleared; with ``copy``, a history row written in the same transaction (the copy of
        its messages is never lost). The map entry as it is now (None: no entry)."""
        statement = (
            update(channel_map)
            .where(
                channel_map.c.conversation_id == conversation_id,
                channel_map.c.deleted_at.is_not(None),
            )
            .values(
                deleted_at=None,
                generation=channel_map.c.generation + 1,
                history_until=None,
                history_message_id=None,
                history_copying=copy,
            )
            .returning(*_REF_COLUMNS)
        )
        with self.engine.begin() as conn:
            row = conn.execute(statement).first()
            if row is None:  # reopened already (by a job before this one)
                return self.channel_for(conversation_id, conn)
            if copy:
                target = Target("conversation", conversation_id)
                write_changes(conn, [Change(target, "history", {"history": True})])
        return _ref(row)

    def end_history_copy(self, conversation_id: str, generation: int) -> None:
        """The history copy of a reopened channel's ``generation`` is complete: live messages
        go at once (a copy of an older generation ends nothing)."""
        statement = (
            update(channel_map)
            .where(
                channel_map.c.conversation_id == conversation_id,
                channel_map.c.generation == generation,
                channel_map.c.history_copying.is_(True),
            )
            .values(history_copying=False)
        )
        with self.engine.begin() as conn:
            conn.execute(statement)

    def copied_past(self, conversation_id: str, created_at: datetime) -> bool:
        """Whether the history copy has reached messages created at ``created_at`` (compared
        by the database, which stored the cursor: naive and aware times alike)."""
        query = select(channel_map.c.history_until >= created_at).where(
            channel_map.c.conversation_id == conversation_id
        )
        with self.engine.connect() as conn:
            return bool(conn.scalar(query))

    def conversation_of_channel(self, ref: ChannelRef) -> str | None:
        """The conversation a channel is assigned to, if any."""
        query = select(channel_map.c.conversation_id).where(
            channel_map.c.channel_type == ref.channel_type,
            channel_map.c.channel_id == ref.channel_id,
        )
        with self.engine.connect() as conn:
            owner: str | None = conn.scalar(query)
        return owner

    def assign_channel(self, conversation_id: str, candidates: Sequence[ChannelRef]) -> ChannelRef:
        """Assign the first free candidate to the conversation, once; returns the assignment.

        A conversation that already has a channel keeps it; a candidate that belongs
        to another conversation is skipped.
        """
        for candidate in candidates:
            try:  # insert first: the common case (a new channel) costs one round trip
                with self.engine.begin() as conn:
                    conn.execute(
                        insert(channel_map).values(
                            conversation_id=conversation_id,
                            channel_type=candidate.channel_type,
                            channel_id=candidate.channel_id,
                        )
                    )
                return candidate
            except IntegrityError:
                existing = self.channel_for(conversation_id)
                if existing is not None:  # assigned already (by another worker, or before)
                    return existing
        existing = self.channel_for(conversation_id)
        if existing is None:
            raise LookupError(f"no free channel id for conversation {conversation_id}")
        return existing

    def assign_channels(
        self, candidates: Mapping[str, Sequence[ChannelRef]]
    ) -> dict[str, ChannelRef]:
        """:meth:`assign_channel` for many conversations, in one transaction on PostgreSQL.

        Conversations whose candidates are all taken by others are absent.
        """
        if not self._postgres:
            assigned = {}
            for cid, refs in candidates.items():
                with suppress(LookupError):
                    assigned[cid] = self.assign_channel(cid, refs)
            return assigned
        left = {cid: list(refs) for cid, refs in candidates.items() if refs}
        assigned = {}
        with self.engine.begin() as conn:
            while left:
                rows = [
                    {
                        "conversation_id": cid,
                        "channel_type": refs[0].channel_type,
                        "channel_id": refs[0].channel_id,
                    }
                    for cid, refs in left.items()
                ]
                # In channel id order: concurrent batches lock the unique index alike
                rows.sort(key=lambda row: (row["channel_type"], row["channel_id"]))
                # Three arrays, not a VALUES list: one statement shape, compiled once, whatever
                # the number of rows (a VALUES list of 2,000 rows is compiled anew each time)
                won = set(
                    conn.scalars(
                        _ASSIGN,
                        {
                            "cids": [row["conversation_id"] for row in rows],
                            "types": [row["channel_type"] for row in rows],
                            "ids": [row["channel_id"] for row in rows],
                        },
                    )
                )
                existing = self.channels_for([cid for cid in left if cid not in won], conn)
                for cid, refs in list(left.items()):
                    if cid in won or cid in existing:
                        assigned[cid] = refs[0] if cid in won else existing[cid]
                        del left[cid]
                    elif len(refs) > 1:
                        refs.pop(0)  # taken by another conversation: the next candidate
                    else:
                        del left[cid]
        return assigned

    def history_cursor(self, conversation_id: str, generation: int) -> tuple[datetime, str] | None:
        """The last message copied into the conversation's channel of ``generation``, as
        ``(created_at, id)``; :class:`StaleChannel` when the channel is no longer that
        generation, live (deleted since, or made again)."""
        query = select(channel_map.c.history_until, channel_map.c.history_message_id).where(
            *_live(conversation_id, generation)
        )
        with self.engine.connect() as conn:
            row = conn.execute(query).first()
        if row is None:
            raise StaleChannel(conversation_id, generation)
        if row.history_until is None or row.history_message_id is None:
            return None
        return row.history_until, row.history_message_id

    def set_history_cursor(
        self, conversation_id: str, generation: int, until: datetime, message_id: str
    ) -> None:
        """Record the last message copied into the channel of ``generation`` (the copy
        resumes after it); :class:`StaleChannel`, nothing written, when the channel is no
        longer that generation, live: a copy of an older one never moves a newer one's."""
        statement = (
            update(channel_map)
            .where(*_live(conversation_id, generation))
            .values(history_until=until, history_message_id=message_id)
        )
        with self.engine.begin() as conn:
            if conn.execute(statement).rowcount == 0:
                raise StaleChannel(conversation_id, generation)


class StaleChannel(RetryableError):
    """The channel map no longer holds this generation of the conversation's channel live."""

    def __init__(self, conversation_id: str, generation: int) -> None:
        super().__init__(
            f"the channel of conversation {conversation_id} is no longer generation "
            f"{generation} (deleted, or made again): that generation's history copy stops"
        )


def _live(conversation_id: str, generation: int) -> tuple[ColumnElement[bool], ...]:
    """The map entry of the conversation's channel while it is ``generation``, not deleted."""
    return (
        channel_map.c.conversation_id == conversation_id,
        channel_map.c.generation == generation,
        channel_map.c.deleted_at.is_(None),
    )


_ASSIGN = text(
    f"""
    INSERT INTO {channel_map.name} (conversation_id, channel_type, channel_id)
    SELECT * FROM unnest(CAST(:cids AS text[]), CAST(:types AS text[]), CAST(:ids AS text[]))
    ON CONFLICT DO NOTHING
    RETURNING conversation_id
    """
)
