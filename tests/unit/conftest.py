"""Fixtures of the unit tests: in-memory stand-ins, no services."""

from __future__ import annotations

from collections.abc import Iterator

import fakeredis
import pytest


@pytest.fixture()
def redis() -> Iterator[fakeredis.FakeRedis]:
    """An in-memory Redis (fakeredis), a new one for each test."""
    client = fakeredis.FakeRedis()
    yield client
    client.close()
