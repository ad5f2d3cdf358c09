"""The only place inbox rows are read or written: stored by the receiver and ``inbound
sync``, claimed and settled by the runner, listed and replayed by the operators."""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Connection, Engine, bindparam, func, select, update
from sqlalchemy.dialects.postgresql import insert

from stream_outbox.app_hooks.outbox import InboxStatus, inbox
from stream_outbox.worker.inbound.inbox_event import InboxEvent

__all__ = ["Inbox", "InboxRow", "Settlement", "inbox_row", "unknown_type_error"]

_ERROR_MAX = 2000


@dataclass(frozen=True)
class InboxRow(InboxEvent):
    """One inbox row as read back: the event, and where the runner is with it."""

    id: int
    status: str
    attempts: int
    last_error: str | None
    received_at: datetime
    settled_at: datetime | None

    def as_dict(self) -> dict[str, Any]:
        """The row as JSON-ready values (times as ISO 8601)."""
        out = asdict(self)
        for key in ("event_at", "received_at", "settled_at"):
            out[key] = out[key].isoformat() if out[key] is not None else None
        return out


def unknown_type_error(event_type: str) -> str:
    """The ``last_error`` of an event of a type the inbound side does not apply."""
    return f"not applied: event type {event_type!r} is not one the inbound side takes"


def _values(event: InboxEvent, now: datetime) -> dict[str, Any]:
    """The row of an event; one of a type not applied is settled as ignored at once (every
    row has the same keys: one multi-row INSERT takes them all)."""
    known = event.known
    return {
        "webhook_id": event.webhook_id,
        "event_type": event.event_type,
        "cid": event.cid,
        "message_id": event.message_id,
        "user_id": event.user_id,
        "event_at": event.event_at,
        "payload": event.payload,
        "status": (InboxStatus.PENDING if known else InboxStatus.IGNORED).value,
        "last_error": None if known else unknown_type_error(event.event_type),
        "settled_at": None if known else now,
    }


@dataclass(frozen=True)
class Settlement:
    """How a claimed row settles: its status, error or reason, and whether its attempt
    is counted already (a transient error's, past the retries)."""

    row_id: int
    status: InboxStatus
    error: str | None = None
    counted: bool = False


_STORE = (
    insert(inbox)
    .on_conflict_do_nothing(index_elements=["webhook_id"])
    .returning(inbox.c.webhook_id)
)


class Inbox:
    """Inbox rows on one engine."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    # -- storing ---------------------------------------------------------------------

    def store(self, event: InboxEvent) -> bool:
        """Store one event; False when its ``webhook_id`` is already stored (a retry).

        An event of a type not applied is stored settled as ``ignored``."""
        return self.store_batch([event]) == [True]

    def store_many(self, events: Sequence[InboxEvent]) -> int:
        """Store events in one statement, each ``webhook_id`` once; how many were new."""
        return sum(self.store_batch(events))

    def store_batch(self, events: Sequence[InboxEvent]) -> list[bool]:
        """Store events in one statement and transaction (one commit for all); for each,
        whether it was new (False: its ``webhook_id`` was stored before, or earlier in
        ``events``)."""
        if not events:
            return []
        now = datetime.now(UTC)
        with self.engine.begin() as conn:  # one cached statement, its rows sent in batches
            found = conn.execute(_STORE, [_values(e, now) for e in events])
            inserted = {webhook_id for webhook_id in found.scalars() if webhook_id is not None}
        new: list[bool] = []
        for event in events:
            fresh = event.webhook_id is None or event.webhook_id in inserted
            inserted.discard(event.webhook_id)  # a second one of the batch is a duplicate
            new.append(fresh)
        return new

    # -- the runner ------------------------------------------------------------------

    def claim(self, conn: Connection, limit: int, *, skip: Collection[int] = ()) -> list[InboxRow]:
        """Lock up to ``limit`` pending rows in id order (``FOR UPDATE SKIP LOCKED``) for
        the caller's transaction, leaving out ``skip`` and every row of a channel with an
        earlier pending row held by another runner: a channel's events go in order."""
        query = select(inbox).where(inbox.c.status == InboxStatus.PENDING.value)
        if skip:
            query = query.where(inbox.c.id.not_in(list(skip)))
        query = query.order_by(inbox.c.id).limit(limit).with_for_update(skip_locked=True)
        rows = [inbox_row(found) for found in conn.execute(query).mappings()]
        if not rows:
            return rows
        held = self._held_channels(conn, rows, skip)
        return [row for row in rows if row.cid is None or row.cid not in held]

    @staticmethod
    def _held_channels(
        conn: Connection, rows: Sequence[InboxRow], skip: Collection[int]
    ) -> set[str]:
        """The channels of ``rows`` with an earlier pending row outside them (another
        runner's, or one waiting to be retried)."""
        cids = list({row.cid for row in rows if row.cid is not None})
        if not cids:
            return set()
        ids = [row.id for row in rows]
        earlier = select(inbox.c.cid).where(
            inbox.c.status == InboxStatus.PENDING.value,
            inbox.c.id < max(ids),
            inbox.c.id.not_in(ids),
            inbox.c.cid.in_(cids),
        )
        held = set(conn.scalars(earlier.distinct()))
        # a row waiting for its retry holds back the later rows of its channel
        return held | {str(cid) for cid in conn.scalars(_skipped_cids(skip))} if skip else held

    @staticmethod
    def settle(conn: Connection, settled: Sequence[Settlement]) -> None:
        """Settle claimed rows in one statement: done, ignored (with the reason) or failed
        (with the error); ``settled_at`` is the statement's own time (the rows applied
        before it in the transaction, not its start), the commit following at once."""
        if not settled:
            return
        conn.execute(
            update(inbox)
            .where(inbox.c.id == bindparam("row_id"))
            .values(
                status=bindparam("new_status"),
                attempts=inbox.c.attempts + bindparam("added"),
                last_error=bindparam("error"),
                settled_at=func.clock_timestamp(),
            ),
            [
                {
                    "row_id": one.row_id,
                    "new_status": one.status.value,
                    "added": 0 if one.counted else 1,
                    "error": one.error[:_ERROR_MAX] if one.error else None,
                }
                for one in settled
            ],
        )

    @staticmethod
    def count_attempt(conn: Connection, row_id: int, error: str) -> int:
        """Record a failed attempt of a row left pending (to be retried); its attempts."""
        found = conn.scalar(
            update(inbox)
            .where(inbox.c.id == row_id)
            .values(attempts=inbox.c.attempts + 1, last_error=error[:_ERROR_MAX])
            .returning(inbox.c.attempts)
        )
        return int(found or 0)

    # -- figures and operators ---------------------------------------------------------

    def newest_event_at(self) -> datetime | None:
        """The time of the newest event stored (``inbound sync``'s default start)."""
        with self.engine.connect() as conn:
            found: datetime | None = conn.scalar(select(func.max(inbox.c.event_at)))
        return found

    def pending(self) -> tuple[int, float]:
        """Pending rows, and the age in seconds of the oldest one (0 with none)."""
        query = select(
            func.count(),
            func.coalesce(func.extract("epoch", func.now() - func.min(inbox.c.received_at)), 0),
        ).where(inbox.c.status == InboxStatus.PENDING.value)
        with self.engine.connect() as conn:
            count, age = conn.execute(query).one()
        return int(count), float(age)


def _skipped_cids(skip: Collection[int]) -> Any:
    return select(inbox.c.cid).where(inbox.c.id.in_(list(skip)), inbox.c.cid.is_not(None))


def inbox_row(found: Any) -> InboxRow:
    """An inbox row of a result mapping (a SELECT of the whole table)."""
    return InboxRow(**{column.name: found[column.name] for column in inbox.columns})
