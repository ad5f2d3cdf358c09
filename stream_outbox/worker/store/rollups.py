"""Per-minute rollups of settled rows (``stream_outbox_settled``): written where rows
settle, read by the operators' series and counts, pruned with the done rows.

Each settle counts into the minute's row of its status, target kind and shard (on
PostgreSQL the connection's backend pid modulo :data:`SHARDS`, so workers settling at
once seldom wait on one row), in the same transaction as the status change. A replay
(failed back to pending) writes nothing here: the minutes keep what happened in them.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import Connection, delete, func, literal, select, text
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.sql.dml import Update

from stream_outbox.app_hooks.outbox import outbox, settled_per_minute

__all__ = ["COUNT_FROM_ROWS", "SHARDS", "count_settled", "merge_shards", "prune", "settle"]

SHARDS = 8

# The rollups of the rows settled so far, counted from the rows themselves (PostgreSQL):
# the migration that made the table fills it so for the rows settled before it.
COUNT_FROM_ROWS = text(
    """
    INSERT INTO stream_outbox_settled (minute, status, target_kind, shard, rows, first_created)
    SELECT date_trunc('minute', updated_at), status, target_kind, 0, count(*), min(created_at)
    FROM stream_outbox WHERE status IN ('done', 'failed') GROUP BY 1, 2, 3
    """
)


def settle(conn: Connection, statement: Update) -> None:
    """Run an UPDATE that makes rows done or failed, and count them into this minute's
    rollup in the same transaction (on PostgreSQL in the same statement)."""
    changed = statement.returning(outbox.c.status, outbox.c.target_kind, outbox.c.created_at)
    if conn.dialect.name != "postgresql":
        found: dict[tuple[str, str], tuple[int, datetime]] = {}
        for status, kind, created in conn.execute(changed):
            n, first = found.get((status, kind), (0, created))
            found[status, kind] = (n + 1, min(first, created))
        count_settled(conn, found)
        return
    rows = changed.cte("changed")
    counts = select(
        func.date_trunc("minute", func.now()),
        rows.c.status,
        rows.c.target_kind,
        func.pg_backend_pid() % SHARDS,
        func.count(),
        func.min(rows.c.created_at),
    ).group_by(rows.c.status, rows.c.target_kind)
    # in key order: two statements on one shard lock its rows in the same order
    counts = counts.order_by(rows.c.status, rows.c.target_kind)
    conn.execute(_upsert(pg_insert(settled_per_minute).from_select(_ROLLUP_COLUMNS, counts)))


_ROLLUP_COLUMNS = ["minute", "status", "target_kind", "shard", "rows", "first_created"]
_ROLLUP_KEY = ["minute", "status", "target_kind", "shard"]


def count_settled(conn: Connection, found: Mapping[tuple[str, str], tuple[int, datetime]]) -> None:
    """Add rows settled now, ``{(status, kind): (how many, earliest created_at)}``, to the
    rollup (shard 0; PostgreSQL's minute, or SQLite's in UTC)."""
    postgres = conn.dialect.name == "postgresql"
    minute = func.date_trunc("minute", func.now()) if postgres else _sqlite_minute()
    make = pg_insert if postgres else sqlite_insert
    for (status, kind), (n, first) in sorted(found.items()):
        values = {"minute": minute, "status": status, "target_kind": kind, "shard": 0}
        values.update(rows=n, first_created=first)
        conn.execute(_upsert(make(settled_per_minute).values(**values), postgres))


def _sqlite_minute() -> datetime:
    return datetime.now(UTC).replace(second=0, microsecond=0)


def _upsert(statement: Any, postgres: bool = True) -> Any:
    """An INSERT into the rollup that adds to the minute's row if it is there."""
    least = func.least if postgres else func.min  # SQLite's two-argument min()
    return statement.on_conflict_do_update(
        index_elements=_ROLLUP_KEY,
        set_={
            "rows": settled_per_minute.c.rows + statement.excluded.rows,
            "first_created": least(
                settled_per_minute.c.first_created, statement.excluded.first_created
            ),
        },
    )


def merge_shards(conn: Connection, closed_for: timedelta) -> int:
    """Merge the shards of the minutes ended ``closed_for`` ago or earlier into one row per
    minute, status and kind (PostgreSQL; SQLite writes one shard); the rows it wrote.

    One statement: the shards deleted and added into shard 0 as a settle adds (a settle
    that comes late into a merged minute, from a transaction older than it, makes a
    shard again, merged next time)."""
    if conn.dialect.name != "postgresql":
        return 0
    t = settled_per_minute.c
    closed = func.date_trunc("minute", func.now()) - closed_for
    moved = (
        delete(settled_per_minute)
        .where(t.shard != 0, t.minute < closed)
        .returning(t.minute, t.status, t.target_kind, t.rows, t.first_created)
        .cte("moved")
    )
    key = (moved.c.minute, moved.c.status, moved.c.target_kind)
    merged = (
        select(*key, literal(0), func.sum(moved.c.rows), func.min(moved.c.first_created))
        .group_by(*key)
        .order_by(*key)  # in key order, as a settle locks them
    )
    statement = _upsert(pg_insert(settled_per_minute).from_select(_ROLLUP_COLUMNS, merged))
    return conn.execute(statement).rowcount


def prune(conn: Connection, before: datetime) -> int:
    """Delete the rollups of the minutes wholly before ``before``; how many rows."""
    return conn.execute(
        delete(settled_per_minute).where(settled_per_minute.c.minute < _minute_before(before))
    ).rowcount


def _minute_before(moment: datetime) -> datetime:
    """The start of the minute ``moment`` falls in (a minute that began earlier and ends
    after it keeps rows newer than ``moment``: it stays)."""
    return moment.replace(second=0, microsecond=0)
