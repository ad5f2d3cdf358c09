"""The only place outbox rows are read or written by the worker; the repository also
hands out the channel map (:mod:`stream_outbox.worker.store.channel_map`) on its engine."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import (
    BigInteger,
    Connection,
    Engine,
    Select,
    and_,
    any_,
    func,
    insert,
    literal,
    select,
    tuple_,
    union_all,
    update,
)
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.sql.elements import ColumnElement

from stream_outbox.app_hooks.changes import READS_KEY, Target
from stream_outbox.app_hooks.outbox import PRIORITY_ON_DEMAND, Status, outbox
from stream_outbox.worker.error_groups import cause_of
from stream_outbox.worker.store.channel_map import ChannelMap, ChannelRef
from stream_outbox.worker.store.rollups import count_settled, merge_shards, settle

__all__ = ["ChannelRef", "OutboxRepository", "OutboxRow", "OutboxStats"]

_ERROR_MAX = 2000
# Rows :meth:`OutboxRepository.open_targets` looks at, of the pending and the dispatched
_LOOK_AHEAD = 2000
_JSON_TYPES = {str: "string", list: "array", int: "number", float: "number", bool: "boolean"}
_SETTLED = (Status.DONE, Status.FAILED)


@dataclass(frozen=True)
class OutboxRow:
    """One claimed outbox row."""

    id: int
    target_kind: str
    target_id: str
    event: str
    payload: dict[str, Any]


@dataclass(frozen=True)
class OutboxStats:
    """Figures for the metrics and the admin."""

    pending: int
    dispatched: int
    failed: int
    oldest_pending_age: float


class OutboxRepository:
    """Outbox claims and outcomes on one engine; ``channels``, the channel map on it."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.channels = ChannelMap(engine)
        self._postgres = engine.dialect.name == "postgresql"

    def _ids_in(self, ids: Sequence[int]) -> ColumnElement[bool]:
        """``id IN ids``; on PostgreSQL ``id = ANY(:array)``, one statement text for any
        number of ids, which the driver prepares once (an IN list is a new text per length).
        """
        if self._postgres:
            return outbox.c.id == any_(literal(list(ids), ARRAY(BigInteger)))
        return outbox.c.id.in_(list(ids))

    # -- relay -------------------------------------------------------------------------

    def claim(self, limit: int, *, priority: bool = False) -> list[OutboxRow]:
        """Claim up to ``limit`` due pending rows (SKIP LOCKED) and mark them dispatched.

        The backlog's rows (priority 0), or with ``priority`` the rows an app asked to go
        first, each with the pending rows of its target (one job reconciles them all).
        Returns the claimed rows; the caller enqueues them. Rows another relay is
        claiming at the same moment are skipped, not waited for.
        """
        rank = outbox.c.priority > 0 if priority else outbox.c.priority == 0
        due = (
            select(outbox.c.id)
            .where(outbox.c.status == Status.PENDING, rank, outbox.c.available_at <= func.now())
            .order_by(outbox.c.available_at, outbox.c.id)
            .limit(limit)
            .with_for_update(skip_locked=True)
        )
        with self.engine.begin() as conn:
            # Lock first, update only when there is something: an UPDATE of no rows would
            # still fire the statement trigger, and its NOTIFY would wake the relay again.
            ids = list(conn.scalars(due))
            if ids and priority:
                ids += conn.scalars(self._same_targets(ids))
            if not ids:
                return []
            return self._dispatch(conn, ids)

    def _same_targets(self, ids: Sequence[int]) -> Select[tuple[int]]:
        """The other pending rows of the targets of rows ``ids`` (SKIP LOCKED)."""
        targets = select(outbox.c.target_kind, outbox.c.target_id).where(self._ids_in(ids))
        return (
            select(outbox.c.id)
            .where(
                outbox.c.status == Status.PENDING,
                outbox.c.priority == 0,
                tuple_(outbox.c.target_kind, outbox.c.target_id).in_(targets),
            )
            .with_for_update(skip_locked=True)
        )

    def take_newer(self, kind: str, target_ids: Sequence[str], after: int) -> list[OutboxRow]:
        """Take the open rows of these targets newer than row ``after`` (a history copy's
        continuation): made priority and dispatched to the caller, whoever held them."""
        newer = (
            select(outbox.c.id)
            .where(
                outbox.c.target_kind == kind,
                outbox.c.target_id.in_(list(target_ids)),
                outbox.c.id > after,
                outbox.c.status.in_((Status.PENDING, Status.DISPATCHED)),
            )
            .with_for_update()
        )
        with self.engine.begin() as conn:
            ids = list(conn.scalars(newer))
            if not ids:
                return []
            return self._dispatch(conn, ids, priority=PRIORITY_ON_DEMAND)

    def _dispatch(self, conn: Connection, ids: Sequence[int], **values: Any) -> list[OutboxRow]:
        """Mark locked rows ``ids`` dispatched; their rows, but those with a bad payload
        (failed, each alone), in id order."""
        statement = (
            update(outbox)
            .where(self._ids_in(ids))
            .values(
                status=Status.DISPATCHED,
                dispatched_at=func.now(),
                updated_at=func.now(),
                attempts=outbox.c.attempts + 1,
                **values,
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
            error = f"payload is not a JSON object but a {kind}: fix it, then replay"
            settle(
                conn,
                update(outbox)
                .where(outbox.c.id == row_id)
                .values(
                    status=Status.FAILED,
                    last_error=error,
                    cause_key=cause_of(error).key,
                    updated_at=func.now(),
                ),
            )

    def release(self, ids: Sequence[int]) -> None:
        """Put claimed rows back to pending (their enqueue failed)."""
        self._set(ids, status=Status.PENDING, dispatched_at=None)

    def merge_rollup_shards(self, closed_for: float = 60.0) -> int:
        """Merge the rollups' shards of the minutes closed ``closed_for`` seconds ago."""
        with self.engine.begin() as conn:
            return merge_shards(conn, timedelta(seconds=closed_for))

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
        Rows asking for a history copy, or carrying reads (marks read in Stream), ask for
        more than the state: they are left out.
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
            payload = row.payload or {}
            if not (payload.get("history") or payload.get(READS_KEY)):
                rows.setdefault(row.target_id, []).append(row.id)
        return rows

    @staticmethod
    def newest_open_change(
        conn: Connection, kind: str, target_id: str, events: Sequence[str]
    ) -> datetime | None:
        """When the app wrote the newest change (of ``events``) of a target still on its
        way to Stream (a row pending or dispatched); ``None`` without one."""
        found: datetime | None = conn.scalar(
            select(func.max(outbox.c.created_at)).where(
                outbox.c.target_kind == kind,
                outbox.c.target_id == target_id,
                outbox.c.event.in_(list(events)),
                outbox.c.status.in_((Status.PENDING, Status.DISPATCHED)),
            )
        )
        return None if found is None else _aware(found)

    def open_targets(
        self, kind: str, limit: int, exclude: Sequence[str] = (), event: str | None = None
    ) -> dict[str, tuple[list[int], dict[str, Any]]]:
        """Up to ``limit`` targets of ``kind`` (``exclude`` left out; with ``event``, those
        with a row of that event) with open rows among the first due pending rows and the
        first dispatched ones, each with those rows and their payloads merged.

        Only the first :data:`_LOOK_AHEAD` rows of each are looked at (the partial
        indexes' order), so a long backlog costs no more than a short one.
        """
        if limit <= 0:
            return {}
        columns = (
            outbox.c.id,
            outbox.c.target_kind,
            outbox.c.target_id,
            outbox.c.event,
            outbox.c.payload,
        )
        pending = (
            select(*columns)
            .where(outbox.c.status == Status.PENDING, outbox.c.available_at <= func.now())
            .order_by(outbox.c.available_at, outbox.c.id)
            .limit(_LOOK_AHEAD)
        )
        dispatched = (
            select(*columns)
            .where(outbox.c.status == Status.DISPATCHED)
            .order_by(outbox.c.dispatched_at)
            .limit(_LOOK_AHEAD)
        )
        first = union_all(  # each its own subquery: SQLite takes no LIMIT in a UNION's part
            select(pending.subquery()), select(dispatched.subquery())
        ).subquery()
        query = select(first.c.id, first.c.target_id, first.c.event, first.c.payload).where(
            first.c.target_kind == kind
        )
        if exclude:
            query = query.where(first.c.target_id.not_in(list(exclude)))
        found: dict[str, tuple[list[int], dict[str, Any]]] = {}
        with self.engine.connect() as conn:
            rows = conn.execute(query.order_by(first.c.id)).all()
        wanted = {row.target_id for row in rows if event is None or row.event == event}
        for row in rows:
            if row.target_id in wanted and (row.target_id in found or len(found) < limit):
                ids, payload = found.setdefault(row.target_id, ([], {}))
                ids.append(row.id)
                payload.update(row.payload or {})
        return found

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
        self._set(ids, status=Status.DONE, last_error=None, cause_key=None)

    def mark_failed(self, ids: Sequence[int], error: str) -> None:
        """The rows still open failed for good (a permanent error, or retries ran out).

        Rows already failed keep their own error.
        """
        error = error[:_ERROR_MAX]
        key = cause_of(error).key
        self._set(ids, open_only=True, status=Status.FAILED, last_error=error, cause_key=key)

    def add_failed(self, target: Target, event: str, payload: Mapping[str, Any], error: str) -> int:
        """Write a row for ``target`` failed at once with ``error`` (a part of another job
        that failed alone, for an admin to replay); returns its id."""
        statement = (
            insert(outbox)
            .values(
                target_kind=target.kind,
                target_id=target.id,
                event=event,
                payload=dict(payload),
                status=Status.FAILED,
                last_error=error[:_ERROR_MAX],
                cause_key=cause_of(error[:_ERROR_MAX]).key,
            )
            .returning(outbox.c.id, outbox.c.created_at)
        )
        with self.engine.begin() as conn:
            row = conn.execute(statement).one()
            count_settled(conn, {(Status.FAILED, target.kind): (1, row.created_at)})
        return int(row.id)

    def mark_retrying(self, ids: Sequence[int], error: str, delay: float) -> None:
        """Record a transient error on the rows still open; the visibility timeout
        restarts after the retry's delay."""
        later = datetime.now(UTC) + timedelta(seconds=delay)
        self._set(ids, open_only=True, last_error=error[:_ERROR_MAX], dispatched_at=later)

    def _set(self, ids: Sequence[int], *, open_only: bool = False, **values: Any) -> None:
        """Update the rows not done yet (``open_only``: only those pending or dispatched)."""
        if not ids:
            return
        not_settled = (
            outbox.c.status.in_((Status.PENDING, Status.DISPATCHED))
            if open_only
            else outbox.c.status != Status.DONE
        )
        statement = (
            update(outbox)
            .where(self._ids_in(ids), not_settled)
            .values(updated_at=func.now(), **values)
        )
        with self.engine.begin() as conn:
            if values.get("status") in _SETTLED:
                settle(conn, statement)
            else:
                conn.execute(statement)

    # -- figures -----------------------------------------------------------------------

    def stats(self) -> OutboxStats:
        """Counts by status (but done) and the age of the oldest due pending row."""
        # One count per status, each through its partial index (``status != 'done'``
        # matches none of them: it would read every done row)
        counts = union_all(
            *(
                select(literal(status.value), func.count()).where(outbox.c.status == status)
                for status in (Status.PENDING, Status.DISPATCHED, Status.FAILED)
            )
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
