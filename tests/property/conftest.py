"""The pipeline fixtures of tests/pipeline, with settings for fault injection.

A short Stream timeout (a hung call times out quickly), a large retry budget with
tiny backoffs (transient faults never exhaust it: a row fails only for a permanent
error), and a one-second visibility timeout (a lost job comes back quickly).
"""

from __future__ import annotations

import pytest

from stream_outbox.emulator import Emulator
from stream_outbox.worker.settings import Settings
from tests.pipeline.conftest import app_session, pipeline
from tests.support.redis import REDIS_PREFIX
from tests.support.settings import product_settings

__all__ = ["STREAM_TIMEOUT", "VISIBILITY_TIMEOUT", "app_session", "pipeline", "settings"]

STREAM_TIMEOUT = 0.4
VISIBILITY_TIMEOUT = 1.0


@pytest.fixture()
def settings(database_url: str, redis_url: str, emu: Emulator) -> Settings:
    return product_settings(
        database_url,
        redis_url,
        emu.base_url,
        prefix=REDIS_PREFIX,
        stream_timeout=STREAM_TIMEOUT,
        max_retries=200,
        min_backoff_ms=10,
        max_backoff_ms=80,
        visibility_timeout=VISIBILITY_TIMEOUT,
        stream_limits=False,  # no pacing here: the budget has tests of its own
    )
