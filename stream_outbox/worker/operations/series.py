"""Throughput and lag over time, read from the per-minute rollups and the open rows.

Two series over a window (the last hour in minutes, the last day in quarter hours):

* rows settled per step, done and failed (a row's ``updated_at`` is when it settled);
* the oldest pending age at the end of each step: the age of the oldest row created by
  then and not settled by then (still open, or settled later).

The rows settled come from ``stream_outbox_settled`` (rows settled per minute, status and
kind, with the earliest creation among them: the repository writes it where rows
settle), the open rows through their partial indexes: the cost follows the window's
minutes and the open rows, not the table's history (PostgreSQL, ``date_bin``; measured
in docs/operations.md). A row that failed, was replayed and then done counts in both
minutes: history as it happened.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection, text

__all__ = ["WINDOWS", "Point", "Series", "read_series"]

# name -> (span, step)
WINDOWS: dict[str, tuple[timedelta, timedelta]] = {
    "hour": (timedelta(hours=1), timedelta(minutes=1)),
    "day": (timedelta(days=1), timedelta(minutes=15)),
}


@dataclass(frozen=True)
class Point:
    """One step: its end, the rows settled in it, and the oldest pending age at its end."""

    at: datetime
    done: int
    failed: int
    oldest_pending_seconds: float


@dataclass(frozen=True)
class Series:
    """A window's points, oldest first."""

    window: str
    step_seconds: float
    points: list[Point]

    def as_json(self) -> dict[str, Any]:
        """A JSON-ready form (times in ISO 8601)."""
        return {
            "window": self.window,
            "step_seconds": self.step_seconds,
            "points": [
                {
                    "at": p.at.isoformat(),
                    "done": p.done,
                    "failed": p.failed,
                    "oldest_pending_seconds": round(p.oldest_pending_seconds, 1),
                }
                for p in self.points
            ],
        }


# The steps' ends, and per step the rows settled in it and the earliest creation among
# them: the oldest row open at a step's end is the earliest created, by then, of the rows
# settled after it (a minimum over the later steps) or still open. The window's rollup
# rows (its primary key's range); the open rows through their partial indexes.
_SERIES = text(
    """
    WITH bounds AS (
        SELECT date_bin(:step, now(), TIMESTAMPTZ '2000-01-01') + :step AS t_end
    ), steps AS (
        SELECT generate_series(t_end - :span + :step, t_end, :step) AS at FROM bounds
    ), settled AS (
        SELECT date_bin(:step, minute, TIMESTAMPTZ '2000-01-01') + :step AS at,
               sum(rows) FILTER (WHERE status = 'done') AS done,
               sum(rows) FILTER (WHERE status = 'failed') AS failed,
               min(first_created) AS first_created
        FROM stream_outbox_settled, bounds
        WHERE minute >= t_end - :span
        GROUP BY 1
    ), open_rows AS (
        SELECT least(
            (SELECT min(created_at) FROM stream_outbox WHERE status = 'pending'),
            (SELECT min(created_at) FROM stream_outbox WHERE status = 'dispatched')
        ) AS first_created
    ), per_step AS (
        SELECT steps.at,
               coalesce(settled.done, 0) AS done,
               coalesce(settled.failed, 0) AS failed,
               min(settled.first_created) OVER (
                   ORDER BY steps.at ROWS BETWEEN 1 FOLLOWING AND UNBOUNDED FOLLOWING
               ) AS later_first_created
        FROM steps LEFT JOIN settled ON settled.at = steps.at
    )
    SELECT per_step.at, done, failed,
           coalesce(extract(epoch FROM least(per_step.at, now()) - least(
               CASE WHEN later_first_created <= per_step.at THEN later_first_created END,
               CASE WHEN open_rows.first_created <= per_step.at THEN open_rows.first_created END
           )), 0) AS oldest_pending_seconds
    FROM per_step, open_rows
    ORDER BY per_step.at
    """
)


def read_series(conn: Connection, window: str) -> Series:
    """The ``hour`` or ``day`` window's points (PostgreSQL)."""
    if window not in WINDOWS:
        raise ValueError(f"unknown window {window!r}: use {' or '.join(WINDOWS)}")
    span, step = WINDOWS[window]
    rows = conn.execute(_SERIES, {"span": span, "step": step}).all()
    points = [
        Point(row.at, int(row.done), int(row.failed), max(0.0, float(row.oldest_pending_seconds)))
        for row in rows
    ]
    return Series(window, step.total_seconds(), points)
