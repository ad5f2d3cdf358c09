"""The only place outbox rows and the channel map are read or written by the worker."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from contextlib import suppress
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import (
    BigInteger,
    Connection,
    Engine,
    and_,
    any_,
    func,
    insert,
    literal,
    select,
    update,
)
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.exc import IntegrityError
from sqlalchemy.sql.elements import ColumnElement

from app_hooks.outbox import Status, channel_map, outbox

__all__ = ["ChannelRef", "OutboxRepository", "OutboxRow", "OutboxStats"]

_ERROR_MAX = 2000
_JSON_TYPES = {str: "string", list: "array", int: "number", float: "number", bool: "boolean"}


@dataclass(frozen=True)
class OutboxRow:
    """One claimed outbox row."""

    id: int
    target_kind: str
    target_id: str
    event: str
    payload: dict[str, Any]


@dataclass(frozen=True)
class ChannelRef:
    """A Stream channel's type and id."""

    channel_type: str
    channel_id: str


@dataclass(frozen=True)
class OutboxStats:
    """Figures for the metrics and the admin."""

    pending: int
    dispatched: int
    failed: int
    oldest_pending_age: float


class OutboxRepository:
    """Outbox claims and outcomes, and the channel map, on one engine."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._postgres = engine.dialect.name == "postgresql"

    def _ids_in(self, ids: Sequence[int]) -> ColumnElement[bool]:
        """``id IN ids``; on PostgreSQL ``id = ANY(:array)``, one statement text for any
        number of ids, which the driver prepares once (an IN list is a new text per length).
        """
        if self._postgres:
            return outbox.c.id == any_(literal(list(ids), ARRAY(BigInteger)))
        return outbox.c.id.in_(list(ids))

    # -- relay -------------------------------------------------------------------------

    def claim(self, limit: int) -> list[OutboxRow]:
        """Claim up to ``limit`` due pending rows (SKIP LOCKED) and mark them dispatched.

        Returns the claimed rows; the caller enqueues them. Rows another relay is
        claiming at the same moment are skipped, not waited for.
        """
        due = (
            select(outbox.c.id)
            .where(outbox.c.status == Status.PENDING, outbox.c.available_at <= func.now())
            .order_by(outbox.c.available_at, outbox.c.id)
            .limit(limit)
            .with_for_update(skip_locked=True)
        )
        with self.engine.begin() as conn:
            # Lock first, update only when there is something: an UPDATE of no rows would
            # still fire the statement trigger, and its NOTIFY would wake the relay again.
            ids = list(conn.scalars(due))
            if not ids:
                return []
            statement = (
                update(outbox)
                .where(self._ids_in(ids))
                .values(
                    status=Status.DISPATCHED,
                    dispatched_at=func.now(),
                    updated_at=func.now(),
                    attempts=outbox.c.attempts + 1,
                )
                .returning(
                    outbox.c.id,
                    outbox.c.target_kind,
                    outbox.c.target_id,
                    outbox.c.event,
                    outbox.c.payload,
                )
            )
            rows = conn.execute(statement).all()
            bad = {r.id: r.payload for r in rows if not isinstance(r.payload, dict | None)}
            if bad:
                self._fail_bad_payloads(conn, bad)
        return sorted(
            (
                OutboxRow(r.id, r.target_kind, r.target_id, r.event, dict(r.payload or {}))
                for r in rows
                if r.id not in bad
            ),
            key=lambda row: row.id,
        )

    @staticmethod
    def _fail_bad_payloads(conn: Connection, bad: dict[int, Any]) -> None:
        """Rows whose payload is not a JSON object (edited by hand) fail, each alone."""
        for row_id, payload in bad.items():
            kind = _JSON_TYPES.get(type(payload), type(payload).__name__)
            conn.execute(
                update(outbox)
                .where(outbox.c.id == row_id)
                .values(
                    status=Status.FAILED,
                    last_error=f"payload is not a JSON object but a {kind}: fix it, then replay",
                    updated_at=func.now(),
                )
            )

    def release(self, ids: Sequence[int]) -> None:
        """Put claimed rows back to pending (their enqueue failed)."""
        self._set(ids, status=Status.PENDING, dispatched_at=None)

    def redispatch_stale(self, visibility_timeout: float) -> int:
        """Rows dispatched longer ago than the timeout with no outcome go back to pending."""
        cutoff = func.now() - timedelta(seconds=visibility_timeout)
        statement = (
            update(outbox)
            .where(outbox.c.status == Status.DISPATCHED, outbox.c.dispatched_at < cutoff)
            .values(status=Status.PENDING, available_at=func.now(), updated_at=func.now())
        )
        with self.engine.begin() as conn:
            return conn.execute(statement).rowcount

    # -- outcomes ----------------------------------------------------------------------

    def open_rows_of(
        self, conn: Connection, kind: str, target_ids: Sequence[str]
    ) -> dict[str, list[int]]:
        """The targets' rows still pending or dispatched, as committed now, by target.

        Read before the targets' state, on the same connection: a reconcile that
        brings Stream in step with the state it reads after this settles these rows too.
        Rows asking for a history import ask for more than the state: they are left out.
        """
        if not target_ids:
            return {}
        query = select(outbox.c.id, outbox.c.target_id, outbox.c.payload).where(
            outbox.c.target_kind == kind,
            outbox.c.target_id.in_(list(target_ids)),
            outbox.c.status.in_((Status.PENDING, Status.DISPATCHED)),
        )
        rows: dict[str, list[int]] = {}
        for row in conn.execute(query):
            if not (row.payload or {}).get("history"):
                rows.setdefault(row.target_id, []).append(row.id)
        return rows

    def open_of(self, ids: Sequence[int]) -> list[int]:
        """Those of ``ids`` still pending or dispatched (not settled by anyone yet)."""
        if not ids:
            return []
        query = select(outbox.c.id).where(
            self._ids_in(ids), outbox.c.status.in_((Status.PENDING, Status.DISPATCHED))
        )
        with self.engine.connect() as conn:
            return list(conn.scalars(query))

    def mark_done(self, ids: Sequence[int]) -> None:
        """The rows' targets are in step with the database."""
        self._set(ids, status=Status.DONE, last_error=None)

    def mark_failed(self, ids: Sequence[int], error: str) -> None:
        """The rows still open failed for good (a permanent error, or retries ran out).

        Rows already failed keep their own error.
        """
        self._set(ids, open_only=True, status=Status.FAILED, last_error=error[:_ERROR_MAX])

    def mark_retrying(self, ids: Sequence[int], error: str, delay: float) -> None:
        """Record a transient error on the rows still open; the visibility timeout
        restarts after the retry's delay."""
        later = datetime.now(UTC) + timedelta(seconds=delay)
        self._set(ids, open_only=True, last_error=error[:_ERROR_MAX], dispatched_at=later)

    def _set(self, ids: Sequence[int], *, open_only: bool = False, **values: Any) -> None:
        """Update the rows not done yet (``open_only``: only those pending or dispatched)."""
        if not ids:
            return
        settled = (
            outbox.c.status.in_((Status.PENDING, Status.DISPATCHED))
            if open_only
            else outbox.c.status != Status.DONE
        )
        statement = (
            update(outbox).where(self._ids_in(ids), settled).values(updated_at=func.now(), **values)
        )
        with self.engine.begin() as conn:
            conn.execute(statement)

    # -- channel map -------------------------------------------------------------------

    def channel_for(
        self, conversation_id: str, conn: Connection | None = None
    ) -> ChannelRef | None:
        """The channel assigned to a conversation, if any (on ``conn`` when given)."""
        query = select(channel_map.c.channel_type, channel_map.c.channel_id).where(
            channel_map.c.conversation_id == conversation_id
        )
        if conn is not None:
            row = conn.execute(query).first()
        else:
            with self.engine.connect() as own:
                row = own.execute(query).first()
        return None if row is None else ChannelRef(row.channel_type, row.channel_id)

    def channels_for(
        self, conversation_ids: Sequence[str], conn: Connection
    ) -> dict[str, ChannelRef]:
        """The channels assigned to these conversations (those with none are absent)."""
        if not conversation_ids:
            return {}
        query = select(
            channel_map.c.conversation_id, channel_map.c.channel_type, channel_map.c.channel_id
        ).where(channel_map.c.conversation_id.in_(list(conversation_ids)))
        return {
            row.conversation_id: ChannelRef(row.channel_type, row.channel_id)
            for row in conn.execute(query)
        }

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
                statement = (
                    pg_insert(channel_map)
                    .values(rows)
                    .on_conflict_do_nothing()
                    .returning(channel_map.c.conversation_id)
                )
                won = set(conn.scalars(statement))
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

    def history_cursor(self, conversation_id: str) -> tuple[datetime, str] | None:
        """The last message copied into the conversation's channel, as ``(created_at, id)``."""
        query = select(channel_map.c.history_until, channel_map.c.history_message_id).where(
            channel_map.c.conversation_id == conversation_id
        )
        with self.engine.connect() as conn:
            row = conn.execute(query).first()
        if row is None or row.history_until is None or row.history_message_id is None:
            return None
        return row.history_until, row.history_message_id

    def set_history_cursor(self, conversation_id: str, until: datetime, message_id: str) -> None:
        """Record the last message copied (the import resumes after it)."""
        statement = (
            update(channel_map)
            .where(channel_map.c.conversation_id == conversation_id)
            .values(history_until=until, history_message_id=message_id)
        )
        with self.engine.begin() as conn:
            conn.execute(statement)

    # -- figures -----------------------------------------------------------------------

    def stats(self) -> OutboxStats:
        """Counts by status (but done) and the age of the oldest due pending row."""
        counts = (
            select(outbox.c.status, func.count())
            .where(outbox.c.status != Status.DONE)
            .group_by(outbox.c.status)
        )
        oldest = select(func.min(outbox.c.created_at)).where(
            and_(outbox.c.status == Status.PENDING)
        )
        with self.engine.connect() as conn:
            by_status = {status: n for status, n in conn.execute(counts)}
            first: datetime | None = conn.execute(oldest).scalar()
            now: datetime = conn.execute(select(func.now())).scalar_one()
        age = 0.0 if first is None else max(0.0, (_aware(now) - _aware(first)).total_seconds())
        return OutboxStats(
            pending=by_status.get(Status.PENDING, 0),
            dispatched=by_status.get(Status.DISPATCHED, 0),
            failed=by_status.get(Status.FAILED, 0),
            oldest_pending_age=age,
        )


def _aware(moment: datetime) -> datetime:
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)
