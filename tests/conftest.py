"""Fixtures of the whole suite: a database of this run's own, real Redis, the emulator.

What they stand on is in ``tests/support``. A server that does not answer stops the run
with one line saying what to start.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from sqlalchemy import Engine, create_engine, text
from sqlalchemy.orm import Session, sessionmaker

from stream_outbox.app_hooks import install
from stream_outbox.app_hooks.outbox import metadata as outbox_metadata
from stream_outbox.app_hooks.reference import Base
from stream_outbox.emulator import Emulator
from tests.support import database
from tests.support.redis import redis_db_url
from tests.support.redis import server_trouble as redis_trouble
from tests.support.settings import API_KEY, API_SECRET


@pytest.fixture(scope="session")
def redis_url() -> str:
    """The tests' Redis database (keys are prefixed per run, see ``REDIS_PREFIX``)."""
    url = redis_db_url()
    trouble = redis_trouble(url)
    if trouble is not None:
        pytest.exit(trouble, returncode=3)
    return url


@pytest.fixture(scope="session")
def emulator() -> Iterator[Emulator]:
    """One emulator for the whole session (starting one takes a few milliseconds)."""
    with Emulator(api_key=API_KEY, api_secret=API_SECRET) as emu:
        yield emu


@pytest.fixture()
def emu(emulator: Emulator) -> Emulator:
    """The session emulator, emptied (state, faults, counters, limits)."""
    emulator.reset()
    return emulator


@pytest.fixture(scope="session")
def database_url() -> Iterator[str]:
    """A database of this test run's own, with the outbox schema and the reference app."""
    trouble = database.server_trouble()
    if trouble is not None:
        pytest.exit(trouble, returncode=3)
    with database.outbox_database("stream_outbox_test") as url:
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
