"""The failed rows' counts per cause on SQLite (the demo's database): the migration's
triggers keep them as PostgreSQL's do, and the error groups read them."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import create_engine, insert, update

from stream_outbox.app_hooks.outbox import outbox
from stream_outbox.worker.error_groups import cause_of
from stream_outbox.worker.operations.migrate import upgrade
from stream_outbox.worker.operations.rows import failure_groups
from stream_outbox.worker.store.failed_counts import failed_counts

TOO_LONG = "UpdateUsers HTTP 400 code 4: user {} name is too long"


def test_sqlite_triggers_count_rows_failing_replayed_and_deleted(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'outbox.sqlite3'}"
    upgrade(url)
    engine = create_engine(url)
    key = cause_of(TOO_LONG.format(1)).key
    with engine.begin() as conn:
        ids = [
            conn.execute(
                insert(outbox)
                .values(target_kind="user", target_id=f"u{n}", event="update", payload={})
                .returning(outbox.c.id)
            ).scalar_one()
            for n in range(4)
        ]
        failing = update(outbox).where(outbox.c.id.in_(ids))
        conn.execute(failing.values(status="failed", last_error=TOO_LONG.format(1), cause_key=key))
        conn.execute(update(outbox).where(outbox.c.id == ids[0]).values(status="pending"))
        conn.execute(outbox.delete().where(outbox.c.id == ids[1]))
    with engine.connect() as conn:
        assert conn.execute(failed_counts()).all() == [(key, "user", 2)]
    [group] = failure_groups(engine, with_ids=True)
    assert (group.count, group.ids) == (2, ids[2:])
    engine.dispose()
