"""The admin queries on a big outbox: a million done rows and some thousands failed.

    uv run python -m benchmarks.admin_queries [--done 1000000] [--failed 5000] [--runs 7]

Fills a scratch database (done rows settled over the last day, failed rows of a
dozen causes with ids and numbers in their errors, their cause keys and the rollups as
the repository writes them), then times each admin query:
one ``time_*`` function per query, registered in ``QUERIES``; the median of
``--runs`` runs after one warm-up.
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable
from typing import Any

import psycopg
from sqlalchemy import Engine, create_engine

from benchmarks.backlog import _conninfo
from benchmarks.figures import median
from stream_outbox.worker.error_groups import cause_of
from stream_outbox.worker.operations.rows import failure_groups
from stream_outbox.worker.operations.series import read_series
from stream_outbox.worker.store.rollups import COUNT_FROM_ROWS
from tests.support.database import outbox_database

CAUSES = (
    "after 5 attempts: GetOrCreateChannel HTTP 429 code 9: Too many requests",
    "UpdateUsers HTTP 400 code 4: UpdateUsers failed with error: user {n} name is too long",
    "GetOrCreateChannel HTTP 400 code 16: channel messaging:{n} is frozen",
    "after 5 attempts: UpdateUsers HTTP 503: unavailable after {n} ms",
    "SendMessage HTTP 400 code 4: message {n} is larger than 5000 characters",
    "BadSourceData: conversation {n} has no members",
    "after 5 attempts: ReadTimeout: timed out after {n} s",
    "UpdateChannel HTTP 403 code 17: user {n} may not update the channel",
    "DeleteMessage HTTP 404 code 4: message {n} not found",
    "QueryChannels HTTP 500 code -1: internal error {n}",
    "after 5 attempts: ConnectionError: connection reset ({n})",
    "payload is not a JSON object but a list: fix it, then replay",
)

_DONE = """
INSERT INTO stream_outbox (target_kind, target_id, event, status, attempts,
                           created_at, updated_at, available_at)
SELECT (ARRAY['user', 'conversation', 'message'])[1 + n %% 3], md5(n::text), 'update', 'done', 1,
       t, t + interval '2 seconds', t
FROM generate_series(1, %(rows)s) AS n,
     LATERAL (SELECT now() - interval '1 day' * n / %(rows)s AS t) AS at
"""
_FAILED = """
INSERT INTO stream_outbox (target_kind, target_id, event, status, attempts, last_error,
                           cause_key, created_at, updated_at, available_at)
SELECT (ARRAY['user', 'conversation', 'message'])[1 + n %% 3], md5(n::text), 'update', 'failed',
       5, replace((%(causes)s::text[])[1 + n %% %(count)s], '{n}', (n * 7919)::text),
       (%(keys)s::text[])[1 + n %% %(count)s], t, t + interval '1 minute', t
FROM generate_series(1, %(rows)s) AS n,
     LATERAL (SELECT now() - interval '6 hours' * n / %(rows)s AS t) AS at
"""


def cause_keys() -> list[str]:
    """The cause key of each of :data:`CAUSES` (its ``{n}`` normalised away)."""
    return [cause_of(cause.replace("{n}", "1")).key for cause in CAUSES]


def fill(url: str, done: int, failed: int) -> None:
    """``done`` done rows over the last day and ``failed`` failed rows of the causes above,
    counted into the rollups and keyed by cause as the repository does."""
    with psycopg.connect(_conninfo(url)) as conn:
        conn.execute(_DONE, {"rows": done})
        params = {
            "rows": failed,
            "causes": list(CAUSES),
            "keys": cause_keys(),
            "count": len(CAUSES),
        }
        conn.execute(_FAILED, params)
        conn.execute(str(COUNT_FROM_ROWS))
        conn.commit()
        conn.autocommit = True
        conn.execute("VACUUM ANALYZE stream_outbox")


def _timed(run: Callable[[], Any], runs: int) -> tuple[float, Any]:
    """The median seconds of ``runs`` runs (after one warm-up) and the last result."""
    result = run()
    seconds = []
    for _ in range(runs):
        start = time.perf_counter()
        result = run()
        seconds.append(time.perf_counter() - start)
    return median(seconds), result


def time_error_groups(engine: Engine, runs: int) -> dict[str, Any]:
    """``failure_groups``: failed rows grouped by cause."""
    seconds, groups = _timed(lambda: failure_groups(engine), runs)
    return {
        "median_ms": round(seconds * 1000, 1),
        "groups": len(groups),
        "failed_rows": sum(g.count for g in groups),
    }


def _time_series(engine: Engine, runs: int, window: str) -> dict[str, Any]:
    def read() -> Any:
        with engine.connect() as conn:
            return read_series(conn, window)

    seconds, series = _timed(read, runs)
    settled = sum(p.done + p.failed for p in series.points)
    return {"median_ms": round(seconds * 1000, 1), "points": len(series.points), "settled": settled}


def time_series_hour(engine: Engine, runs: int) -> dict[str, Any]:
    """``read_series(hour)``: rows settled per minute and the oldest pending age."""
    return _time_series(engine, runs, "hour")


def time_series_day(engine: Engine, runs: int) -> dict[str, Any]:
    """``read_series(day)``: the same by quarter hour over the last day."""
    return _time_series(engine, runs, "day")


QUERIES: dict[str, Callable[[Engine, int], dict[str, Any]]] = {
    "error_groups": time_error_groups,
    "series_hour": time_series_hour,
    "series_day": time_series_day,
}


def measure(done: int, failed: int, runs: int) -> dict[str, Any]:
    """Fill a scratch database, then time every query of ``QUERIES``."""
    with outbox_database("stream_outbox_bench_admin") as url:
        started = time.perf_counter()
        fill(url, done, failed)
        filled = time.perf_counter() - started
        engine = create_engine(url)
        try:
            timings = {name: query(engine, runs) for name, query in QUERIES.items()}
        finally:
            engine.dispose()
    return {"done_rows": done, "failed_rows": failed, "fill_s": round(filled, 1), **timings}


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--done", type=int, default=1_000_000, help="done rows")
    parser.add_argument("--failed", type=int, default=5_000, help="failed rows")
    parser.add_argument("--runs", type=int, default=7, help="timed runs per query")
    args = parser.parse_args()
    results = measure(args.done, args.failed, args.runs)
    print(json.dumps(results, indent=2))
    for name in QUERIES:
        print(f"{name}: {results[name]['median_ms']} ms (median of {args.runs})")


if __name__ == "__main__":
    main()
