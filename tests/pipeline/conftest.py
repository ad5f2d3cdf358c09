"""Pipeline fixtures: real PostgreSQL, real Redis, the emulator over HTTP, in-process workers."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest
from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from stream_outbox.app_hooks import install
from stream_outbox.emulator import Emulator
from stream_outbox.worker.settings import Settings
from tests.support.pipeline import Pipeline, running_pipeline
from tests.support.redis import REDIS_PREFIX
from tests.support.settings import product_settings


@pytest.fixture()
def settings(database_url: str, redis_url: str, emu: Emulator) -> Settings:
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
    with running_pipeline(settings, clean_db, emu) as pipe:
        yield pipe


@pytest.fixture()
def app_session(clean_db: Engine) -> Callable[[], Session]:
    """Sessions of the application, with capture installed."""
    factory = sessionmaker(clean_db, expire_on_commit=False)
    install(factory)
    return factory
