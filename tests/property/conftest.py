"""The pipeline under faults: the suite's pipeline on settings for fault injection.

A short Stream timeout (a hung call times out quickly), a large retry budget with
tiny backoffs (transient faults never exhaust it: a row fails only for a permanent
error), and a one-second visibility timeout (a lost job comes back quickly). Unlike
the suite's ``settings``, the emulator keeps Stream's own limits.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from sqlalchemy import Engine

from stream_outbox.emulator import Emulator
from stream_outbox.worker.settings import Settings
from tests.support.pipeline import Pipeline, running_pipeline
from tests.support.redis import REDIS_PREFIX
from tests.support.settings import product_settings


@pytest.fixture()
def settings_under_faults(database_url: str, redis_url: str, emu: Emulator) -> Settings:
    return product_settings(
        database_url,
        redis_url,
        emu.base_url,
        prefix=REDIS_PREFIX,
        stream_timeout=0.4,
        max_retries=200,
        min_backoff_ms=10,
        max_backoff_ms=80,
        visibility_timeout=1.0,
        stream_limits=False,  # no pacing here: the budget has tests of its own
    )


@pytest.fixture()
def pipeline_under_faults(
    settings_under_faults: Settings, clean_db: Engine, emu: Emulator
) -> Iterator[Pipeline]:
    """The relay, a worker and their broker in this process, on ``settings_under_faults``."""
    with running_pipeline(settings_under_faults, clean_db, emu) as pipe:
        yield pipe
