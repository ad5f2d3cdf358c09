"""Fixtures of the whole suite: a database of this run's own, real Redis, the emulator,
and the relay and a worker in the test's process (the pipeline).

What they stand on is in ``tests/support``. A server that does not answer stops the run
with one line saying what to start.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from sqlalchemy import Engine, create_engine
from sqlalchemy.orm import Session, sessionmaker

from stream_outbox.app_hooks import install
from stream_outbox.emulator import Emulator
from stream_outbox.worker.settings import Settings
from tests.support import database
from tests.support.pipeline import Pipeline, running_pipeline
from tests.support.redis import REDIS_PREFIX, redis_db_url
from tests.support.redis import server_trouble as redis_trouble
from tests.support.settings import API_KEY, API_SECRET, product_settings


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
    database.empty_tables(engine)


@pytest.fixture()
def session_factory(clean_db: Engine) -> sessionmaker[Session]:
    """A session factory of the app, with capture installed."""
    factory = sessionmaker(clean_db, expire_on_commit=False)
    install(factory)
    return factory


@pytest.fixture()
def trigger_sessions(clean_db: Engine) -> Iterator[sessionmaker[Session]]:
    """Sessions of the app WITHOUT listeners, the reference binding's capture triggers
    installed instead."""
    with database.capture_triggers(clean_db):
        yield sessionmaker(clean_db, expire_on_commit=False)


@pytest.fixture()
def settings(database_url: str, redis_url: str, emu: Emulator) -> Settings:
    """The pipeline's settings: short timeouts and backoffs, a few retries, no pacing."""
    # The worker does not pace itself here (stream_limits=False below): the emulator
    # does not apply Stream's limits either, or bursts would be 429s retried until
    # max_retries runs out. A test sets the limits it is about (reset() restores them).
    emu.set_stream_limits(False)
    return product_settings(
        database_url,
        redis_url,
        emu.base_url,
        prefix=REDIS_PREFIX,
        stream_timeout=2.0,
        max_retries=4,
        min_backoff_ms=20,
        max_backoff_ms=200,
        visibility_timeout=60,
        stream_limits=False,  # no pacing here: the budget has tests of its own
    )


@pytest.fixture()
def pipeline(settings: Settings, clean_db: Engine, emu: Emulator) -> Iterator[Pipeline]:
    """The relay, a worker and their broker in this process, on ``settings``."""
    with running_pipeline(settings, clean_db, emu) as pipe:
        yield pipe
