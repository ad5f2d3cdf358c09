"""The audit table: who did what to the outbox, when, and to how many rows.

The one writer of its entries. An operation that changes rows writes its entry in the
same transaction (:func:`write`); one outside the outbox in a transaction of its own
(:func:`record`). A run that resumes (resync, backfill) keeps its position in its entry
(:func:`update`, :func:`latest`), the Stream import keeps each file's state in entries
of its own (:func:`entries`), and the export its watermark (read by ``cutover``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, Engine, func, insert, select, update

from stream_outbox.app_hooks.outbox import audit

__all__ = [
    "Entry",
    "entries",
    "latest",
    "latest_id",
    "naming_row",
    "record",
    "update_entry",
    "write",
]

_NAMING_ROW_WINDOW = 500  # the latest entries looked through for a row's ids


@dataclass(frozen=True)
class Entry:
    """An audit entry's id and what it says."""

    id: int
    detail: dict[str, Any]


def write(conn: Connection, *, actor: str, action: str, count: int, detail: dict[str, Any]) -> int:
    """Write one entry in ``conn``'s transaction; returns its id."""
    query = insert(audit).values(actor=actor, action=action, row_count=count, detail=detail)
    return int(conn.execute(query.returning(audit.c.id)).scalar_one())


def record(engine: Engine, *, actor: str, action: str, count: int, detail: dict[str, Any]) -> int:
    """Write one entry in a transaction of its own (an operation outside the outbox)."""
    with engine.begin() as conn:
        return write(conn, actor=actor, action=action, count=count, detail=detail)


def update_entry(
    conn: Connection, entry_id: int, *, detail: dict[str, Any], count: int | None = None
) -> None:
    """Replace an entry's detail (a run's position), and its row count when given."""
    values: dict[str, Any] = {"detail": detail}
    if count is not None:
        values["row_count"] = count
    conn.execute(update(audit).where(audit.c.id == entry_id).values(**values))


def latest(conn: Connection, action: str) -> Entry | None:
    """The newest entry of ``action``, if any."""
    row = conn.execute(
        select(audit.c.id, audit.c.detail)
        .where(audit.c.action == action)
        .order_by(audit.c.id.desc())
        .limit(1)
    ).first()
    return None if row is None else Entry(row.id, dict(row.detail or {}))


def latest_id(conn: Connection, action: str) -> int:
    """The id of the newest entry of ``action`` (0 when there is none)."""
    return int(conn.scalar(select(func.max(audit.c.id)).where(audit.c.action == action)) or 0)


def entries(conn: Connection, action: str) -> list[Entry]:
    """Every entry of ``action``, oldest first."""
    query = select(audit.c.id, audit.c.detail).where(audit.c.action == action)
    return [
        Entry(row.id, dict(row.detail or {})) for row in conn.execute(query.order_by(audit.c.id))
    ]


def naming_row(engine: Engine, row_id: int) -> list[dict[str, Any]]:
    """The latest entries that name an outbox row among their ids, newest first."""
    with engine.connect() as conn:
        rows = conn.execute(
            select(audit).order_by(audit.c.id.desc()).limit(_NAMING_ROW_WINDOW)
        ).all()
    return [
        {**row._mapping, "at": row.at.isoformat()}
        for row in rows
        if row_id in (row.detail or {}).get("ids", [])
    ]
