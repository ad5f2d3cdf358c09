"""The installed ``stream-outbox`` console script, run as a user would run it."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from sqlalchemy import create_engine, inspect, text
from sqlalchemy.engine import make_url
from sqlalchemy.pool import NullPool

from worker.settings import normalize_database_url

SCRIPT = Path(sys.executable).parent / "stream-outbox"
SERVER_URL = normalize_database_url(
    os.environ.get("DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
)
VARIABLES = (
    "DATABASE_URL",
    "REDIS_URL",
    "GETSTREAM_API_KEY",
    "GETSTREAM_API_SECRET",
    "GETSTREAM_APP_ID",
    "STREAM_CHAT_URL",
)
OUTBOX_TABLES = {"stream_outbox", "stream_outbox_channel", "stream_outbox_audit"}

Cli = Callable[..., subprocess.CompletedProcess[str]]


@pytest.fixture(scope="module")
def pycache() -> Path:
    """A bytecode cache for the script, so its imports compile once, not on every run.

    The environment may forbid writing bytecode (``PYTHONDONTWRITEBYTECODE``); this
    cache lives in the system's temporary directory, never in the repository or the
    venv, and Python checks each entry against its source, so a stale one is harmless.
    """
    path = Path(tempfile.gettempdir()) / "stream-outbox-tests-pycache"
    path.mkdir(exist_ok=True)
    return path


@pytest.fixture()
def cli(tmp_path: Path, pycache: Path) -> Cli:
    """Run the console script in an empty temporary directory."""

    def run(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
        # None of our variables but those given, and no pytest state.
        environ = {
            key: value
            for key, value in os.environ.items()
            if key.upper() not in VARIABLES
            and not key.startswith("PYTEST")
            and key != "PYTHONDONTWRITEBYTECODE"
        }
        environ.update(COLUMNS="120", NO_COLOR="1", PYTHONPYCACHEPREFIX=str(pycache), **env)
        return subprocess.run(
            [str(SCRIPT), *args],
            cwd=tmp_path,
            env=environ,
            capture_output=True,
            text=True,
            timeout=90,
            check=False,
        )

    return run


@pytest.fixture()
def fresh_url() -> Iterator[str]:
    """A new, empty database; the URL is in the ``postgres://`` form platforms hand out."""
    admin = create_engine(SERVER_URL, isolation_level="AUTOCOMMIT", poolclass=NullPool)
    name = f"stream_outbox_cli_{os.getpid()}_{uuid.uuid4().hex[:8]}"
    try:
        with admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
        url = make_url(SERVER_URL).set(drivername="postgres", database=name)
        yield url.render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def table_names(url: str) -> set[str]:
    engine = create_engine(normalize_database_url(url), poolclass=NullPool)
    try:
        return set(inspect(engine).get_table_names())
    finally:
        engine.dispose()


def test_script_is_installed() -> None:
    assert SCRIPT.is_file()
    assert os.access(SCRIPT, os.X_OK)


def test_help_lists_migrate(cli: Cli) -> None:
    result = cli("--help")
    assert result.returncode == 0, result.stderr
    assert "Usage" in result.stdout
    assert "migrate" in result.stdout


def test_migrate_creates_the_tables_and_is_repeatable(
    cli: Cli, tmp_path: Path, fresh_url: str
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


def test_migrate_without_database_url_is_one_line(cli: Cli, tmp_path: Path) -> None:
    # Given no DATABASE_URL in the environment and no .env in the working directory
    assert list(tmp_path.iterdir()) == []
    # When migrate runs
    result = cli("migrate")
    # Then it exits 2 with one line naming the variable
    assert result.returncode == 2
    assert result.stderr.splitlines() == ["error: DATABASE_URL is not set"]
    assert result.stdout == ""


def test_migrate_with_a_mysql_url_is_one_line(cli: Cli) -> None:
    result = cli("migrate", DATABASE_URL="mysql://x")
    assert result.returncode == 2
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: DATABASE_URL ")
    assert "mysql://x" not in result.stderr
    assert result.stdout == ""
