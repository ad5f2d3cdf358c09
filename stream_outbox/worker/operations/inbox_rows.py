"""Inbox rows as operators see them: filters, a page of rows, one row, and replay (failed
or ignored rows sent back to pending, audited, for the inbound runner to apply again)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Engine, func, select, update
from sqlalchemy.sql.elements import ColumnElement

from stream_outbox.app_hooks.outbox import InboxStatus, inbox
from stream_outbox.worker.errors import AdminError
from stream_outbox.worker.inbound.inbox import InboxRow, inbox_row
from stream_outbox.worker.operations.rows import escape_like, time_window
from stream_outbox.worker.store import audit

__all__ = [
    "REPLAYABLE",
    "InboxFilters",
    "count_inbox",
    "get_inbox_row",
    "inbox_counts",
    "list_inbox",
    "replay_inbox",
]

REPLAYABLE = (InboxStatus.FAILED.value, InboxStatus.IGNORED.value)
_AUDIT_IDS_MAX = 1000


@dataclass(frozen=True)
class InboxFilters:
    """Which inbox rows: by status, event type, channel, error text and arrival time."""

    status: str | None = None
    event_type: str | None = None
    cid: str | None = None
    error: str | None = None
    since: datetime | None = None
    until: datetime | None = None

    @classmethod
    def parse(cls, **raw: str | None) -> InboxFilters:
        """Validate filters given as text (CLI options, query parameters)."""
        status = raw.get("status") or None
        if status is not None and status not in set(InboxStatus):
            raise AdminError(f"unknown status {status!r}: use one of {', '.join(InboxStatus)}")
        since, until = time_window(raw.get("since"), raw.get("until"))
        return cls(
            status,
            raw.get("event_type") or None,
            raw.get("cid") or None,
            raw.get("error") or None,
            since,
            until,
        )

    def where(self) -> list[ColumnElement[bool]]:
        """The filters as SQL conditions (bound parameters)."""
        c = inbox.c
        conditions: list[ColumnElement[bool]] = []
        for column, value in ((c.status, self.status), (c.event_type, self.event_type)):
            if value:
                conditions.append(column == value)
        if self.cid:
            conditions.append(c.cid == self.cid)
        if self.error:
            conditions.append(c.last_error.ilike(f"%{escape_like(self.error)}%", escape="\\"))
        if self.since:
            conditions.append(c.received_at >= self.since)
        if self.until:
            conditions.append(c.received_at <= self.until)
        return conditions

    def as_dict(self) -> dict[str, Any]:
        """The filters that are set, JSON-ready (for audit rows)."""
        return {k: str(v) for k, v in asdict(self).items() if v is not None}


def list_inbox(
    engine: Engine, filters: InboxFilters, *, limit: int = 50, offset: int = 0
) -> list[InboxRow]:
    """Rows matching ``filters``, newest first, one page."""
    if limit < 1 or offset < 0:
        raise AdminError("--limit must be at least 1 and --page at least 1")
    query = select(inbox).where(*filters.where()).order_by(inbox.c.id.desc())
    with engine.connect() as conn:
        return [inbox_row(r) for r in conn.execute(query.limit(limit).offset(offset)).mappings()]


def count_inbox(engine: Engine, filters: InboxFilters) -> int:
    """How many rows match ``filters``."""
    query = select(func.count()).select_from(inbox).where(*filters.where())
    with engine.connect() as conn:
        return int(conn.scalar(query) or 0)


def inbox_counts(engine: Engine) -> dict[str, int]:
    """Rows by status (every status, 0 where none)."""
    query = select(inbox.c.status, func.count()).group_by(inbox.c.status)
    with engine.connect() as conn:
        found = {str(status): int(count) for status, count in conn.execute(query)}
    return {status.value: found.get(status.value, 0) for status in InboxStatus}


def get_inbox_row(engine: Engine, row_id: int) -> InboxRow:
    """One row, or :class:`AdminError` for an unknown id."""
    with engine.connect() as conn:
        found = conn.execute(select(inbox).where(inbox.c.id == row_id)).mappings().first()
    if found is None:
        raise AdminError(f"no inbox row with id {row_id}")
    return inbox_row(found)


def replay_inbox(
    engine: Engine,
    *,
    actor: str,
    ids: Sequence[int] = (),
    filters: InboxFilters | None = None,
    dry_run: bool = False,
) -> list[int]:
    """Send failed or ignored rows back to pending (attempts from 0), audited; their ids.

    By ids (each must exist and be failed or ignored, or nothing changes) or by filters
    (failed rows unless the filters name ignored)."""
    if bool(ids) == (filters is not None):
        raise AdminError("replay needs row ids or --all-failed with filters, not both")
    with engine.begin() as conn:
        if ids:
            wanted = sorted(set(ids))
            query = select(inbox.c.id, inbox.c.status).where(inbox.c.id.in_(wanted))
            found = {int(row_id): str(status) for row_id, status in conn.execute(query)}
            _check_replayable(wanted, found)
            chosen = wanted
        else:
            assert filters is not None
            status = filters.status or InboxStatus.FAILED.value
            if status not in REPLAYABLE:
                raise AdminError("only failed or ignored inbox rows can be replayed")
            query = select(inbox.c.id).where(*filters.where(), inbox.c.status == status)
            chosen = list(conn.scalars(query.order_by(inbox.c.id)))
        if dry_run or not chosen:
            return chosen
        conn.execute(
            update(inbox)
            .where(inbox.c.id.in_(chosen))
            .values(status=InboxStatus.PENDING.value, attempts=0, settled_at=None)
        )
        detail: dict[str, Any] = {"ids": chosen[:_AUDIT_IDS_MAX]}
        if filters is not None:
            detail["filters"] = filters.as_dict()
        audit.write(conn, actor=actor, action="inbox_replay", count=len(chosen), detail=detail)
    return chosen


def _check_replayable(wanted: list[int], found: dict[int, str]) -> None:
    missing = [i for i in wanted if i not in found]
    if missing:
        raise AdminError(f"no inbox row with id {', '.join(map(str, missing[:10]))}")
    refused = [f"{i} ({found[i]})" for i in wanted if found[i] not in REPLAYABLE]
    if refused:
        raise AdminError(f"only failed or ignored rows can be replayed: {', '.join(refused[:10])}")
