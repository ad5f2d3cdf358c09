"""Per-minute rollups of settled rows and failed rows' cause keys (real PostgreSQL): kept
on every settle path, untouched by replays, pruned by purge, and the operators' views
read from them give the figures the former scans of the whole table gave."""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from typing import Any

import dramatiq
from dramatiq.brokers.stub import StubBroker
from sqlalchemy import Engine, create_engine, func, select, text
from sqlalchemy.orm import Session
from sqlalchemy.pool import NullPool

from stream_outbox.app_hooks.changes import Target
from stream_outbox.app_hooks.outbox import outbox, settled_per_minute
from stream_outbox.worker.error_groups import FailedRow, cause_of, group_failures
from stream_outbox.worker.operations.purge import purge
from stream_outbox.worker.operations.replay import replay
from stream_outbox.worker.operations.rows import failure_groups
from stream_outbox.worker.operations.series import WINDOWS, read_series
from stream_outbox.worker.operations.stats import read_stats
from stream_outbox.worker.pipeline.relay import Relay
from stream_outbox.worker.store.failed_counts import failed_counts
from stream_outbox.worker.store.repository import OutboxRepository
from tests.support.outbox import add_row
from tests.support.pipeline import Pipeline
from tests.support.story import invite

TOO_LONG = "UpdateUsers HTTP 400 code 4: user {} name is too long"
LIMITED = "after 5 attempts: GetOrCreateChannel HTTP 429 code 9: Too many requests {}"


def rollups(engine: Engine) -> dict[tuple[str, str], int]:
    """Rows counted in the rollups, by status and kind."""
    query = select(
        settled_per_minute.c.status,
        settled_per_minute.c.target_kind,
        func.sum(settled_per_minute.c.rows),
    ).group_by(settled_per_minute.c.status, settled_per_minute.c.target_kind)
    with engine.connect() as conn:
        return {(s, k): int(n) for s, k, n in conn.execute(query)}


def pending(engine: Engine, n: int, kind: str = "user", **values: Any) -> list[int]:
    return [add_row(engine, target_kind=kind, target_id=f"{kind}{i}", **values) for i in range(n)]


def cause_keys(engine: Engine) -> dict[int, str | None]:
    with engine.connect() as conn:
        return dict(conn.execute(select(outbox.c.id, outbox.c.cause_key)).all())  # type: ignore[arg-type]


# -- written where rows settle -----------------------------------------------------------


def test_every_settle_path_counts_into_the_minute(clean_db: Engine) -> None:
    repo = OutboxRepository(clean_db)
    done, failed = pending(clean_db, 3), pending(clean_db, 2, "conversation")
    retried, released = pending(clean_db, 1, "message"), pending(clean_db, 1, "message")
    bad = add_row(clean_db, target_kind="message", target_id="m9", payload="a string")
    repo.claim(100)  # all dispatched; the row with a bad payload fails at once
    repo.mark_done(done)
    repo.mark_failed(failed, "GetOrCreateChannel HTTP 400 code 4: no")
    repo.mark_failed(failed, "a second failure of rows failed already")  # not counted again
    repo.mark_done(done)  # nor rows done already
    repo.mark_retrying(retried, "transient", 1.0)
    repo.release(released)
    repo.add_failed(Target("user", "u7"), "update", {}, "UpdateUsers HTTP 500: broke")
    assert rollups(clean_db) == {
        ("done", "user"): 3,
        ("failed", "conversation"): 2,
        ("failed", "message"): 1,
        ("failed", "user"): 1,
    }
    with clean_db.connect() as conn:
        first = conn.scalar(select(func.min(settled_per_minute.c.first_created)))
        oldest = conn.scalar(select(func.min(outbox.c.created_at)).where(outbox.c.id == done[0]))
    assert first == oldest and bad


def test_the_cause_key_is_stored_when_a_row_fails_and_cleared_when_done(clean_db: Engine) -> None:
    repo = OutboxRepository(clean_db)
    ids = pending(clean_db, 2)
    bad = add_row(clean_db, target_id="u9", payload=[1])
    repo.claim(10)
    repo.mark_failed(ids, TOO_LONG.format(17))
    added = repo.add_failed(Target("user", "u8"), "update", {}, LIMITED.format(3))
    keys = cause_keys(clean_db)
    assert keys[ids[0]] == keys[ids[1]] == cause_of(TOO_LONG.format(1)).key
    assert keys[added] == cause_of(LIMITED.format(8)).key
    with clean_db.connect() as conn:
        error = conn.scalar(select(outbox.c.last_error).where(outbox.c.id == bad))
    assert keys[bad] == cause_of(error).key
    repo.mark_done(ids)  # a late success of rows that failed
    assert cause_keys(clean_db)[ids[0]] is None


def test_a_replay_does_not_rewrite_history(clean_db: Engine) -> None:
    repo = OutboxRepository(clean_db)
    ids = pending(clean_db, 3)
    repo.claim(10)
    repo.mark_failed(ids, TOO_LONG.format(1))
    before = rollups(clean_db)
    replay(clean_db, actor="t", ids=ids, per_second=1000)
    assert rollups(clean_db) == before == {("failed", "user"): 3}
    repo.claim(10)
    repo.mark_done(ids)
    assert rollups(clean_db) == {("failed", "user"): 3, ("done", "user"): 3}


def test_purge_prunes_the_rollups_with_the_rows(clean_db: Engine) -> None:
    old = timedelta(days=40)
    add_row(clean_db, status="done", created_at=func.now() - old, updated_at=func.now() - old)
    add_row(clean_db, status="failed", last_error="x", updated_at=func.now() - old)
    recent = add_row(clean_db, status="done")
    assert sum(rollups(clean_db).values()) == 3
    assert purge(clean_db, actor="t", older_than=timedelta(days=30)) == 1
    assert rollups(clean_db) == {("done", "user"): 1}
    with clean_db.connect() as conn:
        assert conn.scalar(select(func.count()).select_from(outbox)) == 2
        assert conn.scalar(select(outbox.c.status).where(outbox.c.id == recent)) == "done"


# -- the views read the figures the scans read -------------------------------------------

# The series as read before the rollups: a pass over the rows settled in the window.
_SCANNED_SERIES = text(
    """
    WITH bounds AS (
        SELECT date_bin(:step, now(), TIMESTAMPTZ '2000-01-01') + :step AS t_end
    ), steps AS (
        SELECT generate_series(t_end - :span + :step, t_end, :step) AS at FROM bounds
    ), settled AS (
        SELECT date_bin(:step, updated_at, TIMESTAMPTZ '2000-01-01') + :step AS at,
               count(*) FILTER (WHERE status = 'done') AS done,
               count(*) FILTER (WHERE status = 'failed') AS failed,
               min(created_at) AS first_created
        FROM stream_outbox, bounds
        WHERE status IN ('done', 'failed') AND updated_at > t_end - :span
        GROUP BY 1
    ), open_rows AS (
        SELECT min(created_at) AS first_created FROM stream_outbox
        WHERE status IN ('pending', 'dispatched')
    ), per_step AS (
        SELECT steps.at, coalesce(settled.done, 0) AS done,
               coalesce(settled.failed, 0) AS failed,
               min(settled.first_created) OVER (
                   ORDER BY steps.at ROWS BETWEEN 1 FOLLOWING AND UNBOUNDED FOLLOWING
               ) AS later_first_created
        FROM steps LEFT JOIN settled ON settled.at = steps.at
    )
    SELECT per_step.at, done, failed,
           greatest(coalesce(extract(epoch FROM least(per_step.at, now()) - least(
               CASE WHEN later_first_created <= per_step.at THEN later_first_created END,
               CASE WHEN open_rows.first_created <= per_step.at THEN open_rows.first_created END
           )), 0), 0) AS oldest_pending_seconds
    FROM per_step, open_rows ORDER BY per_step.at
    """
)
# Rows settled now, moved back in time with their rollups (whole minutes: the same bins)
_MOVE_ROWS = text(
    "UPDATE stream_outbox SET created_at = created_at - :back, updated_at = updated_at - :back"
    " WHERE id = ANY(:ids)"
)
_MOVE_ROLLUPS = text(
    "UPDATE stream_outbox_settled SET minute = minute - :back,"
    " first_created = first_created - :back WHERE minute > now() - interval '2 minutes'"
)


def history(engine: Engine) -> None:
    """Rows settled through the repository in batches over the last day, each batch moved
    back to its time with its rollups; some left open."""
    repo = OutboxRepository(engine)
    for n, minutes_ago in enumerate((3, 4, 17, 45, 61, 130, 600, 1300, 1500)):
        kind = ("user", "conversation", "message")[n % 3]
        ids = pending(engine, 3 + n % 4, kind, created_at=func.now() - timedelta(minutes=n % 5))
        repo.claim(100)
        repo.mark_done(ids[1:])
        error = (TOO_LONG if n % 2 else LIMITED).format(n)
        repo.mark_failed(ids[:1], error)
        with engine.begin() as conn:
            back = timedelta(minutes=minutes_ago)
            conn.execute(_MOVE_ROWS, {"back": back, "ids": ids})
            conn.execute(_MOVE_ROLLUPS, {"back": back})
    pending(engine, 2, "user", created_at=func.now() - timedelta(minutes=50))


def test_series_stats_and_error_groups_read_what_the_scans_read(clean_db: Engine) -> None:
    history(clean_db)
    with clean_db.connect() as conn:
        for window, (span, step) in WINDOWS.items():
            scanned = conn.execute(_SCANNED_SERIES, {"span": span, "step": step}).all()
            points = read_series(conn, window).points
            assert [(p.at, p.done, p.failed) for p in points] == [
                (r.at, r.done, r.failed) for r in scanned
            ]
            ages = [round(p.oldest_pending_seconds) for p in points]
            assert ages == [round(float(r.oldest_pending_seconds)) for r in scanned]
        by = conn.execute(
            select(outbox.c.status, outbox.c.target_kind, func.count()).group_by(
                outbox.c.status, outbox.c.target_kind
            )
        ).all()
        rows = conn.execute(
            select(
                outbox.c.id,
                outbox.c.target_kind,
                outbox.c.target_id,
                outbox.c.last_error,
                outbox.c.updated_at,
            ).where(outbox.c.status == "failed")
        ).all()
    figures = read_stats(clean_db)
    for status, kinds in figures["by_status_and_kind"].items():
        assert kinds == {k: n for s, k, n in by if s == status}
    assert sum(figures["by_status"].values()) == sum(n for _, _, n in by)

    def readable(group: Any) -> dict[str, Any]:
        return {**group.as_dict(), "sample_targets": sorted(group.samples)}

    scanned_groups = group_failures(FailedRow(*row) for row in rows)
    assert len(scanned_groups) == 2
    groups = failure_groups(clean_db, with_ids=True)
    assert [readable(g) for g in groups] == [readable(g) for g in scanned_groups]
    assert all(g.ids == [] for g in failure_groups(clean_db))


def test_rows_failed_without_a_cause_key_are_grouped_with_the_others(clean_db: Engine) -> None:
    # Given rows failed by a worker older than the cause key, and one failed since
    keyed = add_row(clean_db, status="failed", last_error=TOO_LONG.format(1))
    unkeyed = [
        add_row(clean_db, status="failed", last_error=TOO_LONG.format(n), cause_key=None)
        for n in (2, 3)
    ]
    # Then their group is one, of all three rows
    [group] = failure_groups(clean_db, with_ids=True)
    assert (group.count, group.ids) == (3, [keyed, *unkeyed])


def test_a_pipeline_run_counts_every_row_it_settles(
    pipeline: Pipeline, session_factory: Callable[[], Session], clean_db: Engine
) -> None:
    # Given an invitation written by the app and drained by the real relay and workers
    with session_factory() as session, session.begin():
        invite(session)
    pipeline.drain()
    # Then the rollups count each row the run settled, once, by status and kind
    settled_rows: dict[tuple[str, str], int] = {}
    for row in pipeline.rows():
        key = (row["status"], row["target_kind"])
        settled_rows[key] = settled_rows.get(key, 0) + 1
    assert settled_rows and rollups(clean_db) == settled_rows


# -- failed rows counted by the outbox's triggers ----------------------------------------


def failed_by_cause(
    engine: Engine,
) -> tuple[dict[tuple[str, str], int], dict[tuple[str, str], int]]:
    """The triggers' counts and the failed rows counted, by cause key and kind."""
    rows = (
        select(outbox.c.cause_key, outbox.c.target_kind, func.count())
        .where(outbox.c.status == "failed", outbox.c.cause_key.is_not(None))
        .group_by(outbox.c.cause_key, outbox.c.target_kind)
    )
    with engine.connect() as conn:
        kept = {(k, kind): int(n) for k, kind, n in conn.execute(failed_counts())}
        counted = {(k, kind): int(n) for k, kind, n in conn.execute(rows)}
    return kept, counted


def test_the_failed_counts_follow_every_way_a_row_fails_or_stops_failing(
    clean_db: Engine,
) -> None:
    repo = OutboxRepository(clean_db)

    def holds(expected: dict[tuple[str, str], int]) -> None:
        kept, counted = failed_by_cause(clean_db)
        assert kept == counted == expected

    too_long, limited = cause_of(TOO_LONG.format(1)).key, cause_of(LIMITED.format(1)).key
    users, talks = pending(clean_db, 4), pending(clean_db, 2, "conversation")
    bad = add_row(clean_db, target_kind="message", target_id="m1", payload=[1])
    repo.claim(100)  # the row with a bad payload fails at once
    bad_key = cause_keys(clean_db)[bad]
    assert bad_key is not None
    holds({(bad_key, "message"): 1})
    # When workers fail rows, and a part of a job fails alone
    repo.mark_failed(users, TOO_LONG.format(1))
    repo.mark_failed(talks, LIMITED.format(2))
    repo.mark_failed(users, "failed again: not counted again")
    repo.add_failed(Target("user", "u9"), "update", {}, TOO_LONG.format(9))
    holds({(bad_key, "message"): 1, (too_long, "user"): 5, (limited, "conversation"): 2})
    # When an operator replays some, and a replayed row is done after all
    replay(clean_db, actor="t", ids=users[:2], per_second=1000)
    holds({(bad_key, "message"): 1, (too_long, "user"): 3, (limited, "conversation"): 2})
    repo.claim(100)
    repo.mark_done(users[:2])
    # And a failed row is done after all, one is deleted, one is changed by hand
    repo.mark_done(talks[:1])
    with clean_db.begin() as conn:
        conn.execute(outbox.delete().where(outbox.c.id == bad))
        conn.execute(outbox.update().where(outbox.c.id == users[2]).values(cause_key=limited))
    # Then the counts are the failed rows' own, and the views read them
    holds({(too_long, "user"): 2, (limited, "user"): 1, (limited, "conversation"): 1})
    assert read_stats(clean_db)["by_status_and_kind"]["failed"] == {"user": 3, "conversation": 1}
    groups = {g.key: (g.count, g.kinds) for g in failure_groups(clean_db)}
    assert groups == {too_long: (2, {"user"}), limited: (2, {"user", "conversation"})}


def test_the_failed_counts_hold_with_workers_failing_and_replaying_at_once(
    clean_db: Engine,
) -> None:
    # Given 4 workers, each with connections of its own (backends in different shards)
    repos = [OutboxRepository(create_engine(clean_db.url, poolclass=NullPool)) for _ in range(4)]
    batches = [pending(clean_db, 30, ("user", "conversation")[n % 2]) for n in range(4)]
    OutboxRepository(clean_db).claim(1000)

    def work(n: int) -> None:
        repo, ids = repos[n], batches[n]
        for i in range(0, 30, 3):
            repo.mark_failed(ids[i : i + 3], (TOO_LONG if i % 2 else LIMITED).format(n))
        replay(repo.engine, actor="t", ids=ids[::2], per_second=10_000)
        repo.claim(1000)
        repo.mark_failed(ids[::4], TOO_LONG.format(n))

    # When they fail rows of the same causes, replay and fail again, all at once
    with ThreadPoolExecutor(4) as pool:
        list(pool.map(work, range(4)))
    # Then the triggers' counts are the failed rows' own
    kept, counted = failed_by_cause(clean_db)
    assert kept == counted and sum(kept.values()) > 0
    for repo in repos:
        repo.engine.dispose()


def test_closed_minutes_shards_merge_into_one_row_and_the_sums_stay(clean_db: Engine) -> None:
    # Given rows settled by several connections (shards) in this minute and moved back
    engines = [create_engine(clean_db.url, poolclass=NullPool) for _ in range(6)]
    ids = pending(clean_db, 12)
    OutboxRepository(clean_db).claim(100)
    for n, engine in enumerate(engines):
        OutboxRepository(engine).mark_done(ids[2 * n : 2 * n + 1])
        OutboxRepository(engine).mark_failed(ids[2 * n + 1 : 2 * n + 2], TOO_LONG.format(n))
    with clean_db.begin() as conn:
        conn.execute(_MOVE_ROLLUPS, {"back": timedelta(minutes=5)})
        shards = conn.scalar(select(func.count(func.distinct(settled_per_minute.c.shard))))
    assert shards is not None and shards > 1
    before = rollups(clean_db)
    # When the relay sweeps
    Relay(OutboxRepository(clean_db), dramatiq.actor(lambda *a: None, broker=StubBroker())).sweep()
    # Then the minute is one row per status and kind, in shard 0, and counts the same
    with clean_db.connect() as conn:
        kept = conn.execute(select(settled_per_minute.c.status, settled_per_minute.c.shard)).all()
    assert sorted(kept) == [("done", 0), ("failed", 0)]
    assert rollups(clean_db) == before == {("done", "user"): 6, ("failed", "user"): 6}
    for engine in engines:
        engine.dispose()
