"""The operators' views over a week of history: the dashboard's front page, ``admin errors
--json`` and ``admin stats --series``, at 1,000,000 and 10,000,000 outbox rows.

    uv run python -m benchmarks.operators_views [--sizes 1000000,10000000] [--runs 7]

Each size gets a scratch database filled in SQL (``generate_series``): rows created
evenly over the last week and settled two seconds later, 2 % of them failed of a dozen
causes (200,000 at 10M), a trickle pending; the rollups and cause keys as the
repository writes them (four workers' shards, the closed minutes' merged as the relay
does; the failed rows counted by the outbox's triggers), then ``VACUUM ANALYZE`` as
autovacuum would. Times: the front page as an authenticated HTTP GET through the real dashboard
app (Starlette's TestClient), the two commands as the functions they run and their
JSON; the median of ``--runs`` runs after one warm-up. Targets: the page <= 0.3 s, each
command <= 1 s, flat from the smaller size to the larger.
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable, Sequence
from typing import Any

import psycopg
from sqlalchemy import Engine, create_engine
from starlette.testclient import TestClient

from benchmarks.admin_queries import CAUSES, cause_keys
from benchmarks.backlog import _conninfo
from benchmarks.figures import median
from stream_outbox.worker.dashboard.app import create_app
from stream_outbox.worker.operations.rows import failure_groups
from stream_outbox.worker.operations.series import WINDOWS, read_series
from stream_outbox.worker.operations.stats import read_stats
from stream_outbox.worker.settings import Settings
from stream_outbox.worker.store.repository import OutboxRepository
from tests.support.database import outbox_database

SIZES = (1_000_000, 10_000_000)
FAILED_EVERY = 50  # 2 % of the rows: 200,000 of 10,000,000
PENDING = 500
SHARDS = 4
TARGETS = {"front_page": 0.3, "errors_json": 1.0, "stats_series": 1.0}
_USER, _PASSWORD = "bench", "bench-password-0000"

# Rows over the last week, oldest first; every FAILED_EVERY-th failed, with its cause's key
_ROWS = """
INSERT INTO stream_outbox (target_kind, target_id, event, status, attempts, last_error,
                           cause_key, created_at, updated_at, available_at)
SELECT (ARRAY['user', 'conversation', 'message'])[1 + n %% 3], (n %% 100000)::text, 'update',
       CASE WHEN failed THEN 'failed' ELSE 'done' END, 1,
       CASE WHEN failed THEN replace((%(causes)s::text[])[1 + n / %(every)s %% %(count)s], '{n}',
                                     (n::bigint * 7919)::text) END,
       CASE WHEN failed THEN (%(keys)s::text[])[1 + n / %(every)s %% %(count)s] END,
       t, t + interval '2 seconds', t
FROM generate_series(1, %(rows)s) AS n,
     LATERAL (SELECT now() - interval '7 days' * (%(rows)s - n) / %(rows)s - interval '1 minute'
                  AS t, n %% %(every)s = 0 AS failed) AS r
"""
_PENDING = """
INSERT INTO stream_outbox (target_kind, target_id, event, created_at, available_at)
SELECT 'user', 'p' || n, 'update', now() - interval '1 second' * n / 10, now()
FROM generate_series(1, %(rows)s) AS n
"""
# The rollups the repository would have written for these rows (shards: its workers)
_ROLLUPS = """
INSERT INTO stream_outbox_settled (minute, status, target_kind, shard, rows, first_created)
SELECT date_trunc('minute', updated_at), status, target_kind, id %% %(shards)s, count(*),
       min(created_at)
FROM stream_outbox WHERE status IN ('done', 'failed') GROUP BY 1, 2, 3, 4
"""


def fill(url: str, rows: int) -> dict[str, Any]:
    """``rows`` settled rows over the last week and the trickle pending; seconds taken."""
    keys = cause_keys()
    start = time.perf_counter()
    with psycopg.connect(_conninfo(url)) as conn:
        conn.execute("SET synchronous_commit = off")
        params = {"rows": rows, "every": FAILED_EVERY, "causes": list(CAUSES), "keys": keys}
        conn.execute(_ROWS, {**params, "count": len(CAUSES)})
        conn.execute(_PENDING, {"rows": PENDING})
        conn.execute(_ROLLUPS, {"shards": SHARDS})
        conn.commit()
        OutboxRepository(engine := create_engine(url)).merge_rollup_shards()  # as the relay
        engine.dispose()
        conn.autocommit = True
        conn.execute("VACUUM ANALYZE stream_outbox")
        conn.execute("VACUUM ANALYZE stream_outbox_settled")
        # the fill's pages written out now, not by a checkpoint during the timed queries (a
        # week-old table has none pending)
        conn.execute("CHECKPOINT")
    return {"rows": rows + PENDING, "failed": rows // FAILED_EVERY, "fill_s": _s(start)}


def _s(start: float) -> float:
    return round(time.perf_counter() - start, 1)


def _timed(run: Callable[[], Any], runs: int) -> float:
    """The median seconds of ``runs`` runs after one warm-up."""
    run()
    seconds = []
    for _ in range(runs):
        start = time.perf_counter()
        run()
        seconds.append(time.perf_counter() - start)
    return median(seconds)


def _front_page(url: str, engine: Engine) -> Callable[[], Any]:
    settings = Settings(database_url=url, dashboard_user=_USER, dashboard_password=_PASSWORD)
    client = TestClient(create_app(settings, engine=engine), base_url="http://dash.test")

    def get() -> None:
        page = client.get("/", auth=(_USER, _PASSWORD))
        if page.status_code != 200 or "Failures by cause" not in page.text:
            raise RuntimeError(f"front page: HTTP {page.status_code} {page.text[:300]}")

    return get


def _errors_json(engine: Engine) -> Callable[[], Any]:
    """What ``admin errors --json`` runs: the groups with every row's id, as JSON (the
    table, ``errors_s``, reads the groups without their ids)."""
    return lambda: json.dumps(
        {"groups": [g.as_dict() for g in failure_groups(engine, with_ids=True)]}
    )


def _stats_series(engine: Engine) -> Callable[[], Any]:
    """What ``admin stats --series --json`` runs against the database, as JSON."""

    def read() -> str:
        figures = read_stats(engine)
        with engine.connect() as conn:
            figures["series"] = {w: read_series(conn, w).as_json() for w in WINDOWS}
        return json.dumps(figures)

    return read


def measure_size(rows: int, runs: int = 7) -> dict[str, Any]:
    """Fill a scratch database with ``rows`` rows and time the three views on it."""
    with outbox_database("stream_outbox_opsviews") as url:
        figures = fill(url, rows)
        engine = create_engine(url)
        try:
            figures["front_page_s"] = _timed(_front_page(url, engine), runs)
            figures["errors_json_s"] = _timed(_errors_json(engine), runs)
            figures["errors_s"] = _timed(lambda: failure_groups(engine), runs)
            figures["stats_series_s"] = _timed(_stats_series(engine), runs)
            figures["groups"] = len(failure_groups(engine))
        finally:
            engine.dispose()
    return figures


def measure(sizes: Sequence[int] = SIZES, runs: int = 7) -> dict[str, Any]:
    """The three views' median seconds at each size, and whether each met its target."""
    by_size = {str(rows): measure_size(rows, runs) for rows in sizes}
    met = {
        view: all(figures[f"{view}_s"] <= target for figures in by_size.values())
        for view, target in TARGETS.items()
    }
    return {"sizes": by_size, "targets_s": TARGETS, "met": met, "runs": runs}


def rows(result: dict[str, Any]) -> list[tuple[str, str, str, str]]:
    """The figures as the report's rows: one a size, then whether each target was met."""
    out = []
    for figures in result["sizes"].values():
        out.append(
            (
                f"operators' views, {figures['rows']:,} rows ({figures['failed']:,} failed)",
                f"front page {figures['front_page_s'] * 1000:.0f} ms",
                f"errors --json {figures['errors_json_s'] * 1000:.0f} ms, "
                f"stats --series {figures['stats_series_s'] * 1000:.0f} ms",
                f"groups alone {figures['errors_s'] * 1000:.0f} ms; median of {result['runs']}",
            )
        )
    verdicts = {view: "met" if ok else "MISSED" for view, ok in result["met"].items()}
    met = ", ".join(
        f"{view.replace('_', ' ')} <= {target * 1000:.0f} ms: {verdicts[view]}"
        for view, target in TARGETS.items()
    )
    out.append(("operators' views, targets", met, "", "at every size"))
    return out


def table(result: dict[str, Any]) -> str:
    """The figures as a text table, one line per size."""
    lines = [
        f"{'rows':>11} {'failed':>8} {'fill s':>7} {'front page s':>13} {'errors --json s':>16}"
        f" {'stats --series s':>17} {'errors (table) s':>17}"
    ]
    for figures in result["sizes"].values():
        lines.append(
            f"{figures['rows']:>11,} {figures['failed']:>8,} {figures['fill_s']:>7}"
            f" {figures['front_page_s']:>13.3f} {figures['errors_json_s']:>16.3f}"
            f" {figures['stats_series_s']:>17.3f} {figures['errors_s']:>17.3f}"
        )
    targets = ", ".join(
        f"{v} <= {t} s: {'met' if result['met'][v] else 'MISSED'}" for v, t in TARGETS.items()
    )
    return "\n".join([*lines, f"targets: {targets} (median of {result['runs']} runs)"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--sizes", default=",".join(map(str, SIZES)), help="rows, comma-separated")
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--json", dest="json_path", help="also write the figures here")
    args = parser.parse_args()
    try:
        sizes = [int(size) for size in args.sizes.split(",")]
    except ValueError:
        parser.error(f"--sizes takes whole numbers, comma-separated, not {args.sizes!r}")
    if any(size < FAILED_EVERY for size in sizes) or args.runs < 1:
        parser.error(f"each size must be at least {FAILED_EVERY} rows and --runs at least 1")
    result = measure(sizes, args.runs)
    print(table(result))
    if args.json_path:
        with open(args.json_path, "w") as out:
            json.dump(result, out, indent=2)


if __name__ == "__main__":
    main()
