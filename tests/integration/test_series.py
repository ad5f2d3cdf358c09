"""Throughput and lag series read from the outbox table (real PostgreSQL)."""

from __future__ import annotations

from sqlalchemy import Engine, text

from stream_outbox.worker.operations.series import read_series
from stream_outbox.worker.store.rollups import COUNT_FROM_ROWS


def test_settled_rows_and_the_oldest_pending_age_by_minute(clean_db: Engine) -> None:
    with clean_db.begin() as conn:
        # Given rows settled ten minutes ago (3 done, 1 failed) and just now (2 done),
        # one created twenty minutes ago and settled five minutes ago, one still pending
        # since thirty minutes ago, and done rows from two hours ago (outside the window)
        conn.execute(
            text(
                """
                INSERT INTO stream_outbox
                    (target_kind, target_id, event, status, created_at, updated_at)
                SELECT 'user', 'u' || g, 'insert', s, now() - c, now() - u
                FROM (VALUES
                    (1, 'done', interval '11 minutes', interval '10 minutes'),
                    (2, 'done', interval '11 minutes', interval '10 minutes'),
                    (3, 'done', interval '11 minutes', interval '10 minutes'),
                    (4, 'failed', interval '11 minutes', interval '10 minutes'),
                    (5, 'done', interval '1 minute', interval '0 minutes'),
                    (6, 'done', interval '1 minute', interval '0 minutes'),
                    (7, 'done', interval '20 minutes', interval '5 minutes'),
                    (8, 'pending', interval '30 minutes', interval '30 minutes'),
                    (9, 'done', interval '3 hours', interval '2 hours')
                ) AS r(g, s, c, u)
                """
            )
        )
        # counted into the rollups as the migration counts rows settled before it
        conn.execute(COUNT_FROM_ROWS)
    # When the last hour's series is read
    with clean_db.connect() as conn:
        series = read_series(conn, "hour")
    # Then it has sixty steps, the settled rows in them, none from before the window
    assert len(series.points) == 60 and series.step_seconds == 60
    assert sum(p.done for p in series.points) == 6
    assert sum(p.failed for p in series.points) == 1
    assert max(p.done for p in series.points) == 3
    # and the oldest pending age is the pending row's, about thirty minutes at the end
    assert 29 * 60 <= series.points[-1].oldest_pending_seconds <= 31 * 60
    # (forty minutes back, before it was created, the oldest open row was none)
    assert series.points[15].oldest_pending_seconds == 0


def test_an_unknown_window_is_refused_in_one_line(clean_db: Engine) -> None:
    with clean_db.connect() as conn:
        try:
            read_series(conn, "week")
        except ValueError as exc:
            assert str(exc) == "unknown window 'week': use hour or day"
        else:
            raise AssertionError("no error")
