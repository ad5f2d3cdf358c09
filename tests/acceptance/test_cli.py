"""The installed ``stream-outbox`` console script, run as a user would run it."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from sqlalchemy import create_engine, inspect
from sqlalchemy.pool import NullPool

from stream_outbox.app_hooks.outbox import metadata
from stream_outbox.worker.settings import normalize_database_url
from tests.support.processes import Run
from tests.support.settings import BIN

pytestmark = pytest.mark.slow

SCRIPT = BIN / "stream-outbox"
# The product's tables (the outbox, channel map, audit, inbox and message map)
OUTBOX_TABLES = set(metadata.tables)


def table_names(url: str) -> set[str]:
    engine = create_engine(normalize_database_url(url), poolclass=NullPool)
    try:
        return set(inspect(engine).get_table_names())
    finally:
        engine.dispose()


def test_script_is_installed() -> None:
    assert SCRIPT.is_file()
    assert os.access(SCRIPT, os.X_OK)


def test_help_lists_migrate(cli: Run) -> None:
    result = cli("--help")
    assert result.returncode == 0, result.stderr
    assert "Usage" in result.stdout
    assert "migrate" in result.stdout


def test_migrate_creates_the_tables_and_is_repeatable(
    cli: Run, tmp_path: Path, fresh_url: str
) -> None:
    # Given an empty database named by a postgres:// URL
    assert fresh_url.startswith("postgres://")
    assert table_names(fresh_url) == set()
    # When migrate runs
    first = cli("migrate", DATABASE_URL=fresh_url)
    # Then it succeeds and the outbox tables exist
    assert first.returncode == 0, first.stderr
    assert "outbox schema is up to date" in first.stdout
    assert table_names(fresh_url) == {*OUTBOX_TABLES, "stream_outbox_alembic_version"}
    # And a second run, finding DATABASE_URL in ./.env this time, succeeds changing nothing
    (tmp_path / ".env").write_text(f"DATABASE_URL={fresh_url}\n")
    second = cli("migrate")
    assert second.returncode == 0, second.stderr
    assert "outbox schema is up to date" in second.stdout
    assert table_names(fresh_url) == {*OUTBOX_TABLES, "stream_outbox_alembic_version"}


def test_migrate_without_database_url_is_one_line(cli: Run, tmp_path: Path) -> None:
    # Given no DATABASE_URL in the environment and no .env in the working directory
    assert list(tmp_path.iterdir()) == []
    # When migrate runs
    result = cli("migrate")
    # Then it exits 2 with one line naming the variable
    assert result.returncode == 2
    assert result.stderr.splitlines() == ["error: DATABASE_URL is not set"]
    assert result.stdout == ""


def test_migrate_with_a_mysql_url_is_one_line(cli: Run) -> None:
    result = cli("migrate", DATABASE_URL="mysql://x")
    assert result.returncode == 2
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: DATABASE_URL ")
    assert "mysql://x" not in result.stderr
    assert result.stdout == ""
