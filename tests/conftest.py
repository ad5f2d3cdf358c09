"""Shared fixtures: a fresh PostgreSQL database per test run, real Redis.

``DATABASE_URL`` names the server to use (default: local PostgreSQL, user postgres);
the run creates its own database there and drops it at the end. ``REDIS_URL``
names the Redis server. A server that does not answer stops the run with one line
saying what to start.
"""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Iterator

import pytest
from redis import Redis
from sqlalchemy import Engine, create_engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session, sessionmaker

from stream_outbox.app_hooks import install
from stream_outbox.app_hooks.outbox import metadata as outbox_metadata
from stream_outbox.app_hooks.reference import Base
from stream_outbox.emulator import Emulator
from stream_outbox.worker.demo.scratch_db import scratch_database
from stream_outbox.worker.operations.migrate import upgrade
from stream_outbox.worker.runtime import delete_prefixed_keys
from stream_outbox.worker.settings import normalize_database_url

SERVER_URL = normalize_database_url(
    os.environ.get("DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
)
REDIS_URL = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")


API_KEY = "test-key"
API_SECRET = "test-secret-that-is-at-least-32-bytes-long"
TEST_REDIS_DB = 13
# Every Redis key of this run carries this prefix: runs sharing a Redis never meet.
REDIS_PREFIX = f"stream_outbox_test_{os.getpid()}_{uuid.uuid4().hex[:6]}"


def clear_redis(url: str, prefix: str = REDIS_PREFIX) -> None:
    """Delete this run's keys."""
    client = Redis.from_url(url)
    try:
        delete_prefixed_keys(client, prefix)
    finally:
        client.close()


def redis_server() -> str:
    """The ``redis-server`` binary, for tests that start (and stop) Redis servers of their
    own; a test fails, not skips, without it (``.ci/run`` installs it)."""
    found = shutil.which("redis-server")
    if found is None:
        pytest.fail("redis-server is not installed (apt-get install redis-server)")
    return found


@pytest.fixture(scope="session")
def redis_url() -> str:
    """The tests' Redis database (keys are prefixed per run, see REDIS_PREFIX)."""
    base = REDIS_URL.rsplit("/", 1)[0] if REDIS_URL.count("/") > 2 else REDIS_URL
    url = f"{base}/{TEST_REDIS_DB}"
    client = Redis.from_url(url)
    try:
        client.ping()
    except Exception as exc:
        pytest.exit(
            f"Redis does not answer at {base} ({type(exc).__name__}); start it "
            "(redis-server --daemonize yes) or set REDIS_URL",
            returncode=3,
        )
    finally:
        client.close()
    return url


@pytest.fixture(scope="session")
def emulator() -> Iterator[Emulator]:
    with Emulator(api_key=API_KEY, api_secret=API_SECRET) as emu:
        yield emu


@pytest.fixture()
def emu(emulator: Emulator) -> Emulator:
    emulator.reset()
    return emulator


def _admin_engine() -> Engine:
    engine = create_engine(SERVER_URL, isolation_level="AUTOCOMMIT", pool_pre_ping=True)
    try:
        with engine.connect() as conn:
            conn.execute(text("SELECT 1"))
    except Exception as exc:
        url = make_url(SERVER_URL).render_as_string(hide_password=True)
        pytest.exit(
            f"PostgreSQL does not answer at {url} ({type(exc).__name__}); start it "
            "(pg_ctlcluster <version> main start) or set DATABASE_URL",
            returncode=3,
        )
    return engine


@pytest.fixture(scope="session")
def database_url() -> Iterator[str]:
    """A database of this test run's own, with the outbox schema and the reference app."""
    _admin_engine().dispose()  # stops the run with one line when the server does not answer
    name = f"stream_outbox_test_{os.getpid()}"
    with scratch_database(SERVER_URL, name) as url:
        upgrade(url)
        engine = create_engine(url)
        Base.metadata.create_all(engine)
        engine.dispose()
        yield url


@pytest.fixture(scope="session")
def engine(database_url: str) -> Iterator[Engine]:
    engine = create_engine(database_url)
    yield engine
    engine.dispose()


@pytest.fixture()
def clean_db(engine: Engine) -> Iterator[Engine]:
    """The test database, emptied after the test."""
    yield engine
    tables = [*outbox_metadata.sorted_tables, *Base.metadata.sorted_tables]
    names = ", ".join(f'"{table.name}"' for table in tables)
    with engine.begin() as conn:
        conn.execute(text(f"TRUNCATE {names} RESTART IDENTITY CASCADE"))


@pytest.fixture()
def session_factory(clean_db: Engine) -> sessionmaker[Session]:
    """A session factory of the app, with capture installed."""
    factory = sessionmaker(clean_db, expire_on_commit=False)
    install(factory)
    return factory
