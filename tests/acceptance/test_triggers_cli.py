"""``stream-outbox triggers install | check | drop``, run as an operator runs them."""

from __future__ import annotations

import json

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.pool import NullPool

from stream_outbox.app_hooks.reference import Base
from stream_outbox.worker.settings import normalize_database_url
from tests.support.processes import Run

pytestmark = pytest.mark.slow


def execute(url: str, *statements: str) -> list[tuple[object, ...]]:
    engine = create_engine(normalize_database_url(url), poolclass=NullPool)
    try:
        with engine.begin() as conn:
            rows: list[tuple[object, ...]] = []
            for statement in statements:
                result = conn.execute(text(statement))
                rows = [tuple(row) for row in result] if result.returns_rows else []
            return rows
    finally:
        engine.dispose()


def test_install_check_a_renamed_column_then_drop(cli: Run, fresh_url: str) -> None:
    # Given the reference app's tables and the outbox's
    assert cli("migrate", DATABASE_URL=fresh_url).returncode == 0
    engine = create_engine(normalize_database_url(fresh_url), poolclass=NullPool)
    Base.metadata.create_all(engine)
    engine.dispose()

    # When the triggers are installed: every table named, and check finds no drift
    installed = cli("triggers", "install", "--actor", "ops", DATABASE_URL=fresh_url)
    assert installed.returncode == 0, installed.stderr
    assert "installed 24 capture triggers on 8 tables" in installed.stdout
    assert "conversation_participants: insert, update, delete, read" in installed.stdout
    checked = cli("triggers", "check", DATABASE_URL=fresh_url)
    assert (checked.returncode, checked.stdout.strip()) == (
        0,
        "capture triggers match the binding (24 triggers)",
    )
    # and a raw SQL write is captured
    execute(fresh_url, "INSERT INTO users (id, email) VALUES (gen_random_uuid(), 'raw@x')")
    assert execute(fresh_url, "SELECT target_kind, event FROM stream_outbox") == [
        ("user", "insert")
    ]

    # When the app's own migration renames a column the triggers read
    execute(fresh_url, "ALTER TABLE conversation_participants RENAME COLUMN user_id TO member_id")
    drifted = cli("triggers", "check", DATABASE_URL=fresh_url)
    # Then check exits 1 naming the table and column
    assert drifted.returncode == 1, drifted.stdout + drifted.stderr
    assert "conversation_participants.user_id: read by the capture triggers, but the table" in (
        drifted.stdout
    )
    as_json = json.loads(cli("triggers", "check", "--json", DATABASE_URL=fresh_url).stdout)
    assert as_json["installed"] == 24 and len(as_json["drift"]) == 1

    # When they are dropped: nothing installed, the audit has both operations
    dropped = cli("triggers", "drop", "--actor", "ops", DATABASE_URL=fresh_url)
    assert (dropped.returncode, dropped.stdout.strip()) == (0, "dropped 24 capture triggers")
    assert execute(fresh_url, "SELECT actor, action, row_count FROM stream_outbox_audit") == [
        ("ops", "triggers_install", 24),
        ("ops", "triggers_drop", 24),
    ]
    after = cli("triggers", "check", DATABASE_URL=fresh_url)
    assert after.returncode == 1
    assert after.stdout.strip() == (
        "no capture triggers are installed: run `stream-outbox triggers install`"
    )


def test_install_before_migrate_is_one_line(cli: Run, fresh_url: str) -> None:
    engine = create_engine(normalize_database_url(fresh_url), poolclass=NullPool)
    Base.metadata.create_all(engine)
    engine.dispose()
    result = cli("triggers", "install", DATABASE_URL=fresh_url)
    assert result.returncode == 2
    assert result.stderr.strip() == (
        "error: triggers: stream_outbox is missing: run `stream-outbox migrate` first"
    )
