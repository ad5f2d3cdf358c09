"""The Alembic migrations against real PostgreSQL: schema, version table, NOTIFY trigger."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine, create_engine, inspect, text
from sqlalchemy.engine import make_url
from sqlalchemy.orm import sessionmaker
from sqlalchemy.pool import NullPool

from stream_outbox.app_hooks import install
from stream_outbox.app_hooks.outbox import (
    NOTIFY_CHANNEL,
    SCHEMA_REVISION,
    metadata,
    older_than_code,
    schema_revision,
)
from stream_outbox.worker.error_groups import cause_of
from stream_outbox.worker.errors import ConfigurationError
from stream_outbox.worker.operations.migrate import alembic_config, upgrade
from stream_outbox.worker.store.schema import require_migrated
from tests.support.database import empty_database

OUTBOX_TABLES = {
    "stream_outbox",
    "stream_outbox_channel",
    "stream_outbox_audit",
    "stream_outbox_message_map",
    "stream_outbox_inbox",
    "stream_outbox_settled",
    "stream_outbox_failed",
}
VERSION_TABLE = "stream_outbox_alembic_version"
HEAD = "0010"
INSERT_ROW = (
    "INSERT INTO stream_outbox (target_kind, target_id, event) VALUES ('user', '1', 'insert')"
)


def include_object(
    obj: object, name: str | None, type_: str, reflected: bool, compare_to: object
) -> bool:
    """The filter of ``migrations/env.py`` (which cannot be imported outside Alembic)."""
    return type_ != "table" or name in metadata.tables


@pytest.fixture()
def empty_url() -> Iterator[str]:
    """The URL of an empty database of this test's own."""
    with empty_database("stream_outbox_migr") as url:
        yield url


@pytest.fixture()
def db(empty_url: str) -> Iterator[Engine]:
    engine = create_engine(empty_url, poolclass=NullPool)
    yield engine
    engine.dispose()


@pytest.fixture()
def migrated(empty_url: str, db: Engine) -> Engine:
    """This test's own database, migrated to head (for tests that change the schema)."""
    upgrade(empty_url)
    return db


@pytest.fixture(scope="module")
def shared_url() -> Iterator[str]:
    """A database migrated to head, shared by tests that only add rows or app tables."""
    with empty_database("stream_outbox_migr") as url:
        upgrade(url)
        yield url


@pytest.fixture(scope="module")
def shared(shared_url: str) -> Iterator[Engine]:
    engine = create_engine(shared_url, poolclass=NullPool)
    yield engine
    engine.dispose()


def conninfo(url: str) -> str:
    """A libpq connection string for a SQLAlchemy URL."""
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


def tables(engine: Engine) -> set[str]:
    return set(inspect(engine).get_table_names())


def scalars(engine: Engine, sql: str, **params: Any) -> list[Any]:
    with engine.connect() as conn:
        return list(conn.scalars(text(sql), params))


def versions(engine: Engine) -> list[str]:
    return scalars(engine, f"SELECT version_num FROM {VERSION_TABLE}")


def outbox_triggers(engine: Engine) -> tuple[list[str], list[str]]:
    """The outbox's trigger functions and triggers, by name."""
    functions = scalars(
        engine, "SELECT proname FROM pg_proc WHERE proname LIKE 'stream_outbox%' ORDER BY 1"
    )
    triggers = scalars(
        engine,
        "SELECT tgname FROM pg_trigger WHERE NOT tgisinternal AND tgname LIKE 'stream%' ORDER BY 1",
    )
    return functions, triggers


def schema_diff(engine: Engine) -> list[Any]:
    with engine.connect() as conn:
        context = MigrationContext.configure(
            conn,
            opts={
                "include_object": include_object,
                "compare_type": True,
                "compare_server_default": False,
            },
        )
        return list(compare_metadata(context, metadata))


# -- upgrade ---------------------------------------------------------------------------


def test_upgrade_creates_the_outbox_tables_and_own_version_table(
    empty_url: str, db: Engine
) -> None:
    # Given an empty database
    assert tables(db) == set()
    # When the migrations run
    upgrade(empty_url)
    # Then our tables exist, with our own version table at head, and no alembic_version
    assert tables(db) == {*OUTBOX_TABLES, VERSION_TABLE}
    assert "alembic_version" not in tables(db)
    assert versions(db) == [HEAD]
    assert outbox_triggers(db) == (
        ["stream_outbox_count_failed", "stream_outbox_notify"],
        [
            "stream_outbox_failed_delete",
            "stream_outbox_failed_insert",
            "stream_outbox_failed_update",
            "stream_outbox_notify",
        ],
    )


def test_upgrade_leaves_the_apps_own_alembic_history_alone(empty_url: str, db: Engine) -> None:
    # Given an app with its own Alembic history and tables
    with db.begin() as conn:
        conn.execute(
            text(
                "CREATE TABLE alembic_version (version_num VARCHAR(32) NOT NULL, "
                "CONSTRAINT alembic_version_pkc PRIMARY KEY (version_num))"
            )
        )
        conn.execute(text("INSERT INTO alembic_version VALUES ('app_rev_42')"))
        conn.execute(text("CREATE TABLE users (id serial PRIMARY KEY, email text)"))
        conn.execute(text("INSERT INTO users (email) VALUES ('a@example.com')"))
    # When our migrations run, twice
    upgrade(empty_url)
    upgrade(empty_url)
    # Then the app's version and data are untouched and ours is tracked apart
    assert scalars(db, "SELECT version_num FROM alembic_version") == ["app_rev_42"]
    assert scalars(db, "SELECT email FROM users") == ["a@example.com"]
    assert versions(db) == [HEAD]
    assert tables(db) == {*OUTBOX_TABLES, VERSION_TABLE, "alembic_version", "users"}


def test_second_upgrade_is_a_no_op(empty_url: str, migrated: Engine) -> None:
    # Given a migrated database holding a row
    with migrated.begin() as conn:
        conn.execute(text(INSERT_ROW))
    before = (tables(migrated), versions(migrated), outbox_triggers(migrated))
    # When upgrade runs again
    upgrade(empty_url)
    # Then nothing changed and the row is still there
    assert (tables(migrated), versions(migrated), outbox_triggers(migrated)) == before
    assert scalars(migrated, "SELECT target_id FROM stream_outbox") == ["1"]


def test_upgrade_on_a_caller_connection(empty_url: str, db: Engine) -> None:
    # Given a connection the caller owns (as an app's own env.py would hand in)
    with db.begin() as conn:
        # When the migrations run on it
        command.upgrade(alembic_config(empty_url, connection=conn), "head")
    # Then they were committed with the caller's transaction
    assert tables(db) == {*OUTBOX_TABLES, VERSION_TABLE}
    assert versions(db) == [HEAD]


def test_url_with_percent_sign_in_password_reaches_alembic() -> None:
    # '%' is Alembic's interpolation character; the config must escape it.
    url = "postgresql+psycopg://app:p%40ss%25@db.example:5432/app"
    config = alembic_config(url)
    assert config.get_main_option("sqlalchemy.url") == url


def test_schema_after_migration_equals_the_metadata(shared: Engine) -> None:
    # Given an app table beside ours (which the filter must ignore)
    with shared.begin() as conn:
        conn.execute(text("CREATE TABLE app_things (id serial PRIMARY KEY)"))
    # When the live schema is compared with stream_outbox.app_hooks.outbox.metadata
    # Then there is no difference
    assert schema_diff(shared) == []


def test_comparison_would_see_a_difference(migrated: Engine) -> None:
    # Guard: the comparison is not vacuous.
    with migrated.begin() as conn:
        conn.execute(text("DROP INDEX ix_stream_outbox_target"))
        conn.execute(text("ALTER TABLE stream_outbox_audit ADD COLUMN extra text"))
    kinds = {diff[0] if isinstance(diff, tuple) else diff[0][0] for diff in schema_diff(migrated)}
    assert {"add_index", "remove_column"} <= kinds


def test_constraints_hold_after_migration(shared: Engine) -> None:
    with pytest.raises(Exception, match="ck_stream_outbox_status"), shared.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO stream_outbox (target_kind, target_id, event, status) "
                "VALUES ('user', '1', 'insert', 'bogus')"
            )
        )
    with pytest.raises(Exception, match="ck_stream_outbox_target_kind"), shared.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO stream_outbox (target_kind, target_id, event) "
                "VALUES ('event', '1', 'insert')"
            )
        )
    with shared.begin() as conn:
        row = conn.execute(text(f"{INSERT_ROW} RETURNING status, attempts, payload")).one()
    assert tuple(row) == ("pending", 0, {})


def test_the_inbox_stores_a_webhook_id_once(shared: Engine) -> None:
    insert_event = (
        "INSERT INTO stream_outbox_inbox (webhook_id, event_type, payload) "
        "VALUES ('w-1', 'message.new', '{}') ON CONFLICT (webhook_id) DO NOTHING "
        "RETURNING status, attempts"
    )
    with shared.begin() as conn:
        first = conn.execute(text(insert_event)).all()
        again = conn.execute(text(insert_event)).all()
    assert [tuple(row) for row in first] == [("pending", 0)] and again == []
    with pytest.raises(Exception, match="ck_stream_outbox_inbox_status"), shared.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO stream_outbox_inbox (event_type, payload, status) "
                "VALUES ('message.new', '{}', 'bogus')"
            )
        )


# -- downgrade --------------------------------------------------------------------------


def test_downgrade_to_base_drops_everything(empty_url: str, migrated: Engine) -> None:
    # Given a migrated database holding rows
    with migrated.begin() as conn:
        conn.execute(text(INSERT_ROW))
    # When downgraded to base
    command.downgrade(alembic_config(empty_url), "base")
    # Then no outbox table, function or trigger is left, and no version recorded
    assert tables(migrated) <= {VERSION_TABLE}
    if VERSION_TABLE in tables(migrated):
        assert versions(migrated) == []
    assert outbox_triggers(migrated) == ([], [])


def test_downgrade_then_upgrade_round_trips(empty_url: str, migrated: Engine) -> None:
    command.downgrade(alembic_config(empty_url), "base")
    upgrade(empty_url)
    assert tables(migrated) == {*OUTBOX_TABLES, VERSION_TABLE}
    assert versions(migrated) == [HEAD]
    assert schema_diff(migrated) == []


# -- NOTIFY trigger ---------------------------------------------------------------------


@pytest.fixture()
def listener(shared_url: str, shared: Engine) -> Iterator[psycopg.Connection[Any]]:
    conn = psycopg.connect(conninfo(shared_url), autocommit=True)
    try:
        conn.execute(f"LISTEN {NOTIFY_CHANNEL}")
        yield conn
    finally:
        conn.close()


def received(listener: psycopg.Connection[Any], timeout: float) -> list[psycopg.Notify]:
    return list(listener.notifies(timeout=timeout, stop_after=1))


def test_committed_insert_notifies(shared_url: str, listener: psycopg.Connection[Any]) -> None:
    # Given a listener on the outbox channel
    assert NOTIFY_CHANNEL == "stream_outbox"
    # When another connection inserts a row and commits
    with psycopg.connect(conninfo(shared_url)) as writer:
        writer.execute(INSERT_ROW)
        writer.commit()
    # Then a notification arrives on that channel
    started = time.monotonic()
    notes = received(listener, timeout=5)
    assert len(notes) == 1
    assert notes[0].channel == NOTIFY_CHANNEL
    assert notes[0].payload == ""
    assert time.monotonic() - started < 5


def test_rolled_back_insert_does_not_notify(
    shared_url: str, listener: psycopg.Connection[Any]
) -> None:
    # Given a listener, and another connection that inserts a row and rolls back
    with psycopg.connect(conninfo(shared_url)) as writer:
        writer.execute(INSERT_ROW)
        writer.rollback()
    # Then no notification arrives
    assert received(listener, timeout=0.5) == []
    # And the listener does hear a later committed insert (the silence was meaningful)
    with psycopg.connect(conninfo(shared_url)) as writer:
        writer.execute(INSERT_ROW)
        writer.commit()
    assert len(received(listener, timeout=5)) == 1


def test_uncommitted_insert_notifies_only_at_commit(
    shared_url: str, listener: psycopg.Connection[Any]
) -> None:
    with psycopg.connect(conninfo(shared_url)) as writer:
        writer.execute(INSERT_ROW)
        assert received(listener, timeout=0.3) == []
        writer.commit()
    assert len(received(listener, timeout=5)) == 1


def test_status_update_notifies_but_other_updates_do_not(
    shared_url: str, shared: Engine, listener: psycopg.Connection[Any]
) -> None:
    # Given a row whose insert notification has been consumed
    with shared.begin() as conn:
        conn.execute(text(INSERT_ROW))
    assert len(received(listener, timeout=5)) == 1
    # When only attempts change, nothing is heard
    with shared.begin() as conn:
        conn.execute(text("UPDATE stream_outbox SET attempts = attempts + 1"))
    assert received(listener, timeout=0.3) == []
    # When the status changes, a notification arrives
    with shared.begin() as conn:
        conn.execute(text("UPDATE stream_outbox SET status = 'dispatched'"))
    assert len(received(listener, timeout=5)) == 1


# -- the processes refuse an outbox not migrated ---------------------------------------


def test_app_hooks_knows_the_head_revision() -> None:
    # app_hooks (no Alembic inside the app) names the migration its tables are at
    head = ScriptDirectory.from_config(alembic_config("")).get_current_head()
    assert SCHEMA_REVISION == head == HEAD
    # and which revisions are older than its tables (numbered: not compared as text)
    assert older_than_code("0004") and not older_than_code(HEAD)
    assert not any(map(older_than_code, ["10000", "9999", "a1b2c3", None]))


@pytest.mark.slow
def test_a_process_refuses_an_outbox_older_than_its_migrations(
    empty_url: str, db: Engine, caplog: pytest.LogCaptureFixture
) -> None:
    # Given an outbox migrated to the revision before head (a deploy that skipped migrate)
    upgrade(empty_url, revision="0004")
    # Then the app's install() logs it as an error, naming the command
    with caplog.at_level(logging.ERROR, logger="stream_outbox.app_hooks.capture"):
        install(sessionmaker(db))
    assert [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR] == [
        f"the outbox schema is at migration 0004, this version needs {HEAD}: run "
        "`stream-outbox migrate` (channel lookups and on-demand migration fail until then)"
    ]
    # Then the relay's and the worker's start-up check refuses it in one line
    with pytest.raises(ConfigurationError) as refused:
        require_migrated(db)
    assert str(refused.value) == (
        f"the outbox schema is at migration 0004, this version needs {HEAD}: "
        "run `stream-outbox migrate` first"
    )
    # and the relay's command says so, exit status 2, before it starts
    env = {**os.environ, "DATABASE_URL": empty_url}
    done = subprocess.run(
        [str(Path(sys.executable).with_name("stream-outbox")), "relay"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert (done.returncode, done.stderr.strip().splitlines()[-1]) == (
        2,
        f"error: {refused.value}",
    )
    # When it is migrated, Then nothing is refused
    upgrade(empty_url)
    require_migrated(db)


def test_a_newer_outbox_or_one_made_without_alembic_is_accepted(
    empty_url: str, migrated: Engine
) -> None:
    # A schema newer than the code (the code rolled back after migrate): migrations only add
    with migrated.begin() as conn:
        conn.execute(text(f"UPDATE {VERSION_TABLE} SET version_num = '9999'"))
    require_migrated(migrated)
    # Tables made by metadata.create_all have no version table to compare
    with migrated.begin() as conn:
        conn.execute(text(f"DROP TABLE {VERSION_TABLE}"))
    require_migrated(migrated)


def test_a_role_not_granted_the_version_table_is_not_refused(
    empty_url: str, migrated: Engine
) -> None:
    # Given the owner migrated, and the processes' role may only write the outbox's rows
    role = f"stream_outbox_writer_{uuid.uuid4().hex[:8]}"
    with migrated.begin() as conn:
        conn.execute(text(f'CREATE ROLE "{role}" LOGIN'))
        conn.execute(
            text(f'GRANT SELECT, INSERT, UPDATE, DELETE ON {", ".join(OUTBOX_TABLES)} TO "{role}"')
        )
    limited = create_engine(
        make_url(empty_url).set(username=role, password=None), poolclass=NullPool
    )
    try:
        # Then nothing is refused: the revision cannot be read, so nothing is compared
        require_migrated(limited)
        with limited.connect() as conn:
            assert schema_revision(conn) is None
    finally:
        limited.dispose()
        with migrated.begin() as conn:
            conn.execute(text(f'REVOKE ALL ON {", ".join(OUTBOX_TABLES)} FROM "{role}"'))
            conn.execute(text(f'DROP ROLE "{role}"'))


def test_rows_settled_before_the_rollups_are_counted_keyed_and_their_failures_counted(
    empty_url: str, db: Engine
) -> None:
    # Given an outbox at 0008 with rows settled before the rollups (done, failed) and open
    upgrade(empty_url, revision="0008")
    error = "after 3 attempts: UpdateUsers HTTP 400 code 4: user {} name is too long"
    with db.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO stream_outbox (target_kind, target_id, event, status, last_error,"
                " created_at, updated_at) SELECT 'user', g::text, 'insert', s, e,"
                " now() - interval '2 hours', now() - interval '1 hour'"
                " FROM (VALUES (1, 'done', NULL), (2, 'done', NULL), (3, 'failed', :e3),"
                " (4, 'failed', :e4), (5, 'pending', NULL)) AS r(g, s, e)"
            ),
            {"e3": error.format(3), "e4": error.format(4)},
        )
    # When migrated to head
    upgrade(empty_url)
    # Then the failed rows have their cause key, the others none
    with db.connect() as conn:
        keys = dict(conn.execute(text("SELECT target_id, cause_key FROM stream_outbox")).all())
        counts = conn.execute(
            text(
                "SELECT status, target_kind, rows, minute = date_trunc('minute', now() -"
                " interval '1 hour') AS at_settle FROM stream_outbox_settled ORDER BY status"
            )
        ).all()
    assert keys["3"] == keys["4"] == cause_of(error.format(1)).key
    assert keys["1"] is keys["2"] is keys["5"] is None
    # and the settled rows are counted into the minute they settled in
    assert [tuple(r) for r in counts] == [("done", "user", 2, True), ("failed", "user", 2, True)]
    # and the failed rows per cause, then kept by the triggers as a row stops failing
    failed = text(
        "SELECT cause_key, target_kind, sum(rows) FROM stream_outbox_failed GROUP BY 1, 2"
    )
    with db.begin() as conn:
        assert conn.execute(failed).all() == [(keys["3"], "user", 2)]
        conn.execute(text("UPDATE stream_outbox SET status = 'pending' WHERE target_id = '3'"))
        assert conn.execute(failed).all() == [(keys["3"], "user", 1)]
