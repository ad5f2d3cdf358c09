"""Fixtures of the acceptance tests: the installed console script, a fresh database."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.pool import NullPool

from stream_outbox.worker.settings import normalize_database_url

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
    "OUTBOX_BINDING",
)

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
